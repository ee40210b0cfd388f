"""Write tests/cupy14_names.json: the attribute names real CuPy 14 has.

CI has no GPU, so minigrad's CuPy code runs there on a NumPy-backed stand-in
(tests/standin/cupy) and its names are checked by tests/test_cuda_kernels.py.
Both must know which names real CuPy has, or code using a NumPy-only name
(``xp.errstate``) passes CI and fails on a GPU. This script records them from
the real wheel, which imports without a GPU:

    pip install cupy-cuda12x==14.2.0
    python scripts/cupy_names.py

Private names (``_x``) are left out; dunder names (``__add__``) are kept.
"""
import importlib
import json
import os
import sys

from models import cli

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "cupy14_names.json")
# key -> the object whose dir() is recorded (a dotted module path, or module:attribute)
OBJECTS = ["cupy", "cupy:ndarray", "cupy:add", "cupy.cuda", "cupy.cuda:Device", "cupy.cuda.runtime",
           "cupy.cuda.device", "cupy.random", "cupy.random:Generator", "cupy.linalg", "cupyx",
           "cupy._core._routines_linalg"]
UFUNC_METHODS = ("at", "reduce", "accumulate", "reduceat", "outer")


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_") or (n.startswith("__") and n.endswith("__")))


def main(argv=None):
    cli.Parser(prog="cupy_names.py", description=__doc__.split("\n")[0]).parse_args(argv)
    try:
        import cupy  # first: importing a CuPy submodule first hits a circular import
    except ImportError as error:
        raise cli.DataError(f"needs the real CuPy 14 wheel, which imports without a GPU: "
                            f"pip install cupy-cuda12x==14.2.0 ({error})") from error
    if hasattr(cupy, "_standin"):
        raise cli.DataError("this is the stand-in (tests/standin on PYTHONPATH?), not CuPy")
    names = {}
    for target in OBJECTS:
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        obj = getattr(obj, attr) if attr else obj
        names["cupy.ufunc" if attr == "add" else target.replace(":", ".")] = public(obj)
    result = {"cupy_version": cupy.__version__, "names": names,
              "ufunc_methods": {m: hasattr(cupy.add, m) for m in UFUNC_METHODS}}
    with cli.user_files(f"writing {OUT}"):
        with open(OUT, "w") as file:
            json.dump(result, file, indent=1, sort_keys=True)
            file.write("\n")
    print(f"wrote {OUT}: CuPy {cupy.__version__}, {sum(map(len, names.values()))} names")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
