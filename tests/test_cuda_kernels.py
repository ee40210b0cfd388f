"""minigrad's CUDA code, checked without a GPU.

Nobody runs the GPU code in CI: there is no GPU there. So two things a GPU run
would catch are checked here instead:

- every fused kernel in ``cuda_kernels.SPECS`` compiles, in float32 and float64,
  with NVRTC for sm_90, from the full source CuPy 14 generates for it (CuPy's
  headers, the CArray/CIndexer parameters, the loop around ``operation``) and
  the options CuPy compiles it with; needs ``cupy-cuda12x==14.2.0`` and
  ``nvidia-cuda-nvrtc-cu12`` (no GPU), else skipped;
- every ``xp.NAME``, ``cupy.NAME`` and ``cupyx.NAME`` in minigrad/ and scripts/
  is a name real CuPy 14 has (``tests/cupy14_names.json``, from
  ``scripts/cupy_names.py``): NumPy names CuPy lacks fail only on a GPU.
"""
import json
import os
import tokenize
from token import NAME, OP

import numpy as np
import pytest

from minigrad.fast import cuda_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Inputs typed T that the callers in cuda_kernels pass as host scalars, not arrays
# (the spec cannot say; CuPy makes a scalar a plain parameter, an array a CArray).
SCALARS = {"adam": {"beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction2_sqrt",
                    "eps", "step_size"}}


@pytest.fixture(scope="module")
def nvrtc_compile():
    """compile(key, spec, dtype): NVRTC's cubin for sm_90 of the kernel as CuPy builds it, or CompileException."""
    # cupy before any submodule (CuPy imports circularly otherwise); absent: skip, broken: error
    cupy = pytest.importorskip("cupy", exc_type=ModuleNotFoundError)
    if hasattr(cupy, "_standin"):
        pytest.skip("the CuPy stand-in is in place of CuPy")
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    from cupy._core import _carray, _kernel, _scalar, core
    from cupy.cuda import compiler
    try:
        nvrtc.getVersion()
    except Exception as error:  # the library itself is missing
        pytest.skip(f"NVRTC unavailable: {error}")
    ndarray, indexer, scalar = 1, 2, 3  # cupy/_core/_kernel.pxd: _ArgKind

    def compile_(key, spec, dtype):
        # Following CuPy v14.2.0's cupy/_core/_kernel.pyx: ElementwiseKernel.__call__ decides the
        # types (_decide_params_type) and the argument infos (_ArgInfo), then
        # _get_elementwise_kernel_code writes the kernel, the loop around the operation.
        kern = cupy.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation, spec.name,
                                      options=spec.options)
        assert SCALARS.get(key, set()) <= {p.name for p in kern.in_params}, "SCALARS is out of date"
        is_scalar = [not p.raw and (p.dtype is not None or p.name in SCALARS.get(key, ()))
                     for p in kern.in_params] + [False] * len(kern.out_params)
        dtypes = [None if s else np.dtype(p.dtype or dtype)
                  for p, s in zip(kern.in_params + kern.out_params, is_scalar)]
        in_types, out_types, type_map = kern._decide_params_type(tuple(dtypes[:kern.nin]),
                                                                 tuple(dtypes[kern.nin:]))
        # Non-raw arrays as minigrad passes them, contiguous and reduced to 1-d; raw ones 4-d.
        infos = [_kernel._ArgInfo(scalar, _scalar.CScalar, np.dtype(t), 0, True, True) if s else
                 _kernel._ArgInfo(ndarray, cupy.ndarray, np.dtype(t), 4 if p.raw else 1, True, True)
                 for p, t, s in zip(kern.in_params + kern.out_params, in_types + out_types, is_scalar)]
        infos.append(_kernel._ArgInfo(indexer, _carray.Indexer, None, 1, True, True))
        code = _kernel._get_elementwise_kernel_code(tuple(infos), type_map, kern.params, kern.operation,
                                                    kern.name, kern.preamble)
        # cupy/_core/core.pyx compile_with_cache: CuPy's headers first, then
        # assemble_cupy_compiler_options, less its -I of the CUDA toolkit's headers (not
        # installed in CI; NVRTC's built-in headers serve these kernels).
        source = "".join(f"#include <{header}>\n" for header in core._cupy_header_list) + code
        options = core._get_cccl_include_options() + tuple(spec.options)
        options += ("--std=c++17",) if core.use_default_std(options) else ()
        options += (f"-I{core._get_header_dir_path()}",)
        # cupy/cuda/compiler.py: _compile_with_cache_cuda adds -ftz=true, then
        # _compile_using_nvrtc_no_warning the arch (sm_90: a cubin, as on an H100/H200
        # with NVRTC 12.9) and --device-as-default-execution-space.
        options += ("-ftz=true", "-arch=sm_90", "--device-as-default-execution-space")
        cubin, _ = compiler._NVRTCProgram(source, f"{spec.name}.cu", method="cubin").compile(options)
        return cubin

    compile_.CompileException = compiler.CompileException
    return compile_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("key", sorted(cuda_kernels.SPECS))
def test_kernel_compiles_with_nvrtc(nvrtc_compile, key, dtype):
    assert len(nvrtc_compile(key, cuda_kernels.SPECS[key], dtype)) > 0


@pytest.mark.parametrize("operation, error", [
    ("grad_x = y > (T)0 ? grad : (T)0 +", "expected an expression"),  # a syntax error
    ("grad_x = y.value", "must have class type"),  # a type error
    ("grad_x = undeclared", "is undefined"),
])
def test_a_broken_kernel_fails_to_compile(nvrtc_compile, operation, error):
    spec = cuda_kernels.SPECS["relu_backward"]._replace(operation=operation)
    with pytest.raises(nvrtc_compile.CompileException, match=error):
        nvrtc_compile("relu_backward", spec, np.float32)


def uses_of_cupy_names():
    """(file:line, dotted chain) for every xp./cupy./cupyx. attribute chain in the code (not
    the comments or strings) of minigrad/ and scripts/; xp, holding numpy or cupy, reads as cupy."""
    for folder in ("minigrad", "scripts"):
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(directory, name)
                with open(path) as file:
                    tokens = [t for t in tokenize.generate_tokens(file.readline) if t.type in (NAME, OP)]
                for i, token in enumerate(tokens):
                    if token.string not in ("xp", "cupy", "cupyx") or i and tokens[i - 1].string == ".":
                        continue
                    chain, j = [token.string], i + 1
                    while j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == NAME:
                        chain.append(tokens[j + 1].string)
                        j += 2
                    if len(chain) > 1:
                        yield f"{os.path.relpath(path, ROOT)}:{token.start[0]}", ".".join(chain)


def test_every_cupy_name_minigrad_uses_exists_in_cupy_14():
    with open(os.path.join(ROOT, "tests", "cupy14_names.json")) as file:
        names = json.load(file)["names"]
    uses = list(uses_of_cupy_names())
    assert "cupy.empty" in {text for _, text in uses}  # the scan sees the code (cuda_kernels uses it)
    missing = []
    for where, text in uses:
        chain = ["cupy" if text.startswith("xp.") else text.split(".")[0]] + text.split(".")[1:]
        # each name against the object before it, where that object's names were recorded
        for i in range(1, len(chain)):
            owner = ".".join(chain[:i])
            private = chain[i].startswith("_") and not chain[i].startswith("__")  # not recorded
            if owner in names and not private and chain[i] not in names[owner]:
                missing.append(f"{where}: {text} ({owner}.{chain[i]})")
    assert not missing, "names real CuPy 14 lacks (tests/cupy14_names.json):\n" + "\n".join(missing)
