"""NumPy or CuPy: the one place that knows which array library holds the data.

Every op asks ``get_array_module(array)`` for ``xp`` and then writes
``xp.exp(x)``, ``xp.matmul(a, b)`` and so on, so the same line runs on the CPU
(NumPy) and on an NVIDIA GPU (CuPy). CuPy is imported only when a tensor is
put on ``"cuda"``: a CPU-only install never touches it.
"""
import threading

import numpy as np

# dtype aliases users write as ``mg.float32``; a np.dtype compares equal to
# np.float32, "float32" and the dtype of a NumPy array alike.
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
default_float_dtype = float32


def _cupy():
    """Import CuPy on first use, with an error that says how to get it."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which is not installed: "
            'pip install -e ".[cuda]" (the cupy-cuda12x or cupy-cuda13x wheel)') from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDARuntimeError here
        raise RuntimeError(f"device 'cuda': CuPy is installed but no GPU is usable ({error})") from error
    if count == 0:
        raise RuntimeError("device 'cuda': CuPy is installed but it sees no GPU")
    return cupy


def is_cupy_array(array):
    """True for a CuPy array, found without importing CuPy."""
    return type(array).__module__.startswith("cupy")


def get_array_module(array):
    """``numpy`` for a NumPy array (or scalar), ``cupy`` for a CuPy array."""
    if is_cupy_array(array):
        import cupy
        return cupy
    return np


def parse_device(device):
    """Normalise a device name: None and "cpu" -> "cpu"; "cuda" -> "cuda:0"; "cuda:N" kept."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "cuda:0"
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def device_of(array):
    """The device name of a backend array: "cpu" or "cuda:N"."""
    if is_cupy_array(array):
        return f"cuda:{array.device.id}"
    return "cpu"


def array_module(device):
    """The array library for a device name (imports CuPy for "cuda")."""
    return np if parse_device(device) == "cpu" else _cupy()


def to_device(array, device):
    """Return ``array`` on ``device``, copying between host and GPU only when needed."""
    device = parse_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    cupy = _cupy()
    with cupy.cuda.Device(int(device[5:])):
        return cupy.asarray(array)


def as_numpy(array):
    """A NumPy array with the same values (copied from the GPU if needed)."""
    return array.get() if is_cupy_array(array) else np.asarray(array)


def is_floating(dtype):
    return np.issubdtype(dtype, np.floating)


# Random numbers: one generator per array library, reseeded by manual_seed.
# Generators are not shared between threads' seeding calls by accident: the
# lock only guards their creation.
_generators = {}
_seed = None
_lock = threading.Lock()


def manual_seed(seed):
    """Seed every random source minigrad uses (init, dropout, shuffling), on both backends."""
    global _seed
    with _lock:
        _seed = int(seed)
        _generators.clear()


def generator(xp=np):
    """The random generator of an array library (NumPy's or CuPy's), created on first use."""
    with _lock:
        key = xp.__name__
        if key not in _generators:
            _generators[key] = xp.random.default_rng(_seed)
        return _generators[key]
