import contextlib
import importlib.util
import os
import subprocess
import sys

import pytest

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin")
_standin_modules = {}


def real_gpu_usable():
    """True when real CuPy is installed and sees a GPU; asked in a child process, so this one never imports CuPy."""
    if importlib.util.find_spec("cupy") is None:
        return False
    probe = "import cupy, sys; sys.exit(0 if cupy.cuda.runtime.getDeviceCount() > 0 else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def gpu_backend():
    """Which CuPy test_gpu.py runs on: $MINIGRAD_TEST_CUPY ("real" or "standin"), else real where a GPU is usable."""
    choice = os.environ.get("MINIGRAD_TEST_CUPY", "auto")
    if choice not in ("auto", "real", "standin"):
        raise pytest.UsageError(f"MINIGRAD_TEST_CUPY must be auto, real or standin, got {choice!r}")
    if choice == "auto":
        choice = "real" if real_gpu_usable() else "standin"
    return choice


def _cupy_modules():
    return {name: module for name, module in sys.modules.items() if name == "cupy" or name.startswith("cupy.")}


@pytest.fixture(scope="session")
def gpu_kind():
    return gpu_backend()


@contextlib.contextmanager
def standin_in_place():
    """The stand-in in place of CuPy in sys.modules for a block, real CuPy's modules (if imported) put back after.

    The stand-in is imported once; the same modules are swapped in each time.
    """
    saved = _cupy_modules()
    for name in saved:
        del sys.modules[name]
    if not _standin_modules:
        sys.path.insert(0, STANDIN)
        try:
            import cupy as standin  # noqa: F401
        finally:
            sys.path.remove(STANDIN)
        _standin_modules.update(_cupy_modules())
    sys.modules.update(_standin_modules)
    try:
        yield sys.modules["cupy"]
    finally:
        for name in _cupy_modules():
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture
def standin():
    """The CuPy stand-in in place of CuPy for one test, whatever GPU there is."""
    with standin_in_place() as module:
        yield module


@pytest.fixture
def cupy(gpu_kind):
    """The CuPy that minigrad's GPU paths see during one test: real CuPy, or the stand-in in its place."""
    if gpu_kind == "real":
        import cupy as real
        yield real
        return
    with standin_in_place() as module:
        yield module


@pytest.fixture
def gpu_env(gpu_kind):
    """The environment for a child process that must see the same CuPy (PYTHONPATH=tests/standin for the stand-in)."""
    env = dict(os.environ)
    if gpu_kind == "standin":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [STANDIN, env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def fast_on(monkeypatch):
    """The fast paths on for one test, whatever MINIGRAD_FAST says: for tests of the fast layer itself."""
    import minigrad as mg
    monkeypatch.setattr(mg.config, "fast", True)


# The op tests run twice, as minitorch runs its tests over both backends: once with the fast drop-ins
# (the default) and once with the textbook rules alone (mg.config.fast off), so that every op's
# checks against PyTorch and finite differences hold for both. Tests of the fast layer itself ask for
# ``fast_on`` and run once.
OP_TEST_FILES = {"test_elementwise.py", "test_reduce.py", "test_shape.py", "test_matmul.py", "test_conv.py",
                 "test_pool.py", "test_norm.py", "test_loss.py", "test_dropout.py", "test_optim.py"}


def pytest_generate_tests(metafunc):
    if os.path.basename(metafunc.module.__file__) in OP_TEST_FILES and "fast_on" not in metafunc.fixturenames:
        metafunc.fixturenames.append("rules")
        metafunc.parametrize("rules", ["fast", "textbook"], indirect=True)


@pytest.fixture
def rules(request, monkeypatch):
    """Which rules the op runs: "fast" (the drop-ins) or "textbook" (ops/ alone)."""
    import minigrad as mg
    monkeypatch.setattr(mg.config, "fast", request.param == "fast")
    return request.param
