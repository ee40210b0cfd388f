"""NumPy or CuPy: the one place that knows which array library holds the data.

Every op asks ``get_array_module(array)`` for ``xp`` and then writes
``xp.exp(x)``, ``xp.matmul(a, b)`` and so on, so the same line runs on the CPU
(NumPy) and on an NVIDIA GPU (CuPy). CuPy is imported only when a tensor is
put on ``"cuda"``: a CPU-only install never touches it.
"""
import contextlib
import numbers
import threading

import numpy as np

from . import config

# dtype aliases users write as ``mg.float32``; a np.dtype compares equal to
# np.float32, "float32" and the dtype of a NumPy array alike.
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
default_float_dtype = float32


_checked_cupy = set()  # the CuPy modules (by id) already probed


def _cupy():
    """Import CuPy on first use, probe that it can work, with an error that says how to get it."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which is not installed: "
            'pip install -e ".[cuda]" (CUDA 12) or ".[cuda13]" (CUDA 13)') from error
    if id(cupy) not in _checked_cupy:
        _probe(cupy)
        _checked_cupy.add(id(cupy))
    return cupy


def _probe(cupy):
    """Fail now, clearly, where CuPy would fail at the first product or kernel: no GPU, no cuBLAS, no NVRTC."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDARuntimeError here
        raise RuntimeError(f"device 'cuda': CuPy is installed but no GPU is usable ({error})") from error
    if count == 0:
        raise RuntimeError("device 'cuda': CuPy is installed but it sees no GPU")
    for library, load in (("cuBLAS (libcublas)", cupy.cuda.device.get_cublas_handle),
                          ("NVRTC (libnvrtc)", cupy.cuda.nvrtc.getVersion)):
        try:
            load()
        except Exception as error:
            raise RuntimeError(
                f"device 'cuda': CuPy cannot load CUDA's {library} ({error}); install CuPy with CUDA's "
                'libraries: pip install -e ".[cuda]" (cupy-cuda12x[ctk]) or ".[cuda13]"') from error
    from cupy._core import _routines_linalg as linalg
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if config.allow_tf32 else linalg.COMPUTE_TYPE_DEFAULT)


def is_cupy_array(array):
    """True for a CuPy array, found without importing CuPy."""
    return type(array).__module__.startswith("cupy")


def is_array(value):
    """True for a NumPy or a CuPy array (not for lists, numbers or Tensors)."""
    return isinstance(value, np.ndarray) or is_cupy_array(value)


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


def on_device(device):
    """A context in which new CuPy arrays are made on ``device`` ("cuda:N"); no context for "cpu"."""
    device = parse_device(device)
    if device == "cpu":
        return contextlib.nullcontext()
    return _cupy().cuda.Device(int(device[5:]))


def on_device_of(array):
    """The context of the device that holds ``array``: ops on it run there (no context for NumPy)."""
    return array.device if is_cupy_array(array) else contextlib.nullcontext()


def to_device(array, device):
    """Return ``array`` on ``device``, copying between host and GPUs only when needed."""
    device = parse_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    with on_device(device):  # asarray copies to the current device, from the host or another GPU
        return _cupy().asarray(array)


# Checks of values on a GPU that are made at the next copy to the host, so that the
# host does not wait for the GPU at every step: message -> a 0-d bool array, True if
# the check failed. A training step asks for its loss anyway; the flags come with it.
_pending_checks = {}


def check_later(failed, message):
    """Raise ValueError(message) at the next copy from the GPU to the host if ``failed`` (0-d bool, on a GPU) holds.

    A failure of the same check in several steps is reported once: the flags are OR-ed on the GPU.
    """
    earlier = _pending_checks.get(message)
    with on_device_of(failed):
        _pending_checks[message] = failed if earlier is None or earlier.device != failed.device else earlier | failed


def fail_if(failed, message, details=None):
    """Raise ValueError if the boolean array ``failed`` is True anywhere: now on the CPU, later on a GPU.

    On a GPU the check waits for the next copy to the host (``check_later``), so
    that the host does not stop for the device; on the CPU it is made at once,
    and ``details()``, if given, adds what only the values can say (": got ...").
    """
    if is_cupy_array(failed):
        check_later(failed.any(), message + " (checked at the next copy to the host)")
    elif failed.any():
        raise ValueError(message if details is None else f"{message}, {details()}")


def as_numpy(array):
    """A NumPy array with the same values (copied from the GPU if needed, with the pending checks in one transfer)."""
    if not is_cupy_array(array):
        return np.asarray(array)
    ride_along = [message for message, failed in _pending_checks.items() if failed.device == array.device]
    if not ride_along:
        return array.get()
    cupy = get_array_module(array)
    with on_device_of(array):
        flags = [_pending_checks.pop(message).reshape(1).view(cupy.uint8) for message in ride_along]
        packed = cupy.concatenate([cupy.ascontiguousarray(array).reshape(-1).view(cupy.uint8)] + flags).get()
    for message, flag in zip(ride_along, packed[array.nbytes:]):
        if flag:
            raise ValueError(message)
    return packed[:array.nbytes].view(array.dtype).reshape(array.shape)


def is_floating(dtype):
    return np.issubdtype(dtype, np.floating)


# Random numbers: NumPy's generator on the CPU, a counter-based one on the GPU
# (see CounterGenerator), both reseeded by manual_seed and saved by rng_state.
_generators = {}
_seed = None
_lock = threading.Lock()


def manual_seed(seed):
    """Seed every random source minigrad uses (init, dropout, shuffling), on both backends.

    ``seed`` is an integer in [-2**63, 2**64), as ``torch.manual_seed`` takes:
    a negative seed is wrapped to 2**64 + seed, as PyTorch wraps it (NumPy's
    generators take only seeds >= 0). Floats, strings and bools are refused
    rather than truncated, parsed or read as 0 and 1.
    """
    global _seed
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an integer, got {type(seed).__name__} ({seed!r})")
    seed = int(seed)
    if not -2 ** 63 <= seed < 2 ** 64:
        raise ValueError(f"manual_seed: seed must be in [-2**63, 2**64), got {seed}")
    with _lock:
        _seed = seed & _MASK64
        _generators.clear()


def generator(xp=np):
    """The random generator for arrays of ``xp``: NumPy's, or the GPU's CounterGenerator; made on first use."""
    return _generator("numpy" if xp is np else "cupy")


def _generator(key):
    with _lock:
        if key not in _generators:
            _generators[key] = np.random.default_rng(_seed) if key == "numpy" else CounterGenerator(_seed)
        return _generators[key]


def rng_state():
    """Both generators' states as JSON-friendly dicts: what a checkpoint saves to replay a run exactly."""
    return {"numpy": _generator("numpy").bit_generator.state, "cupy": _generator("cupy").state}


def set_rng_state(state):
    """Restore what ``rng_state`` returned."""
    _generator("numpy").bit_generator.state = state["numpy"]
    _generator("cupy").state = state["cupy"]


_MASK64 = (1 << 64) - 1


def _splitmix64(z):
    """Sebastiano Vigna's splitmix64 finaliser: a 64-bit integer to a well-mixed 64-bit integer."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class CounterGenerator:
    """GPU random numbers whose whole state is two integers: a seed and the number of draws so far.

    Draw k fills element i with splitmix64 of (key_k + (i + 1) golden), key_k
    mixed from the seed and k, in one kernel (``fast/cuda_kernels.py``: ``uniform``). As
    nothing lives on the device, a checkpoint saves the state exactly and a
    resumed run draws the same dropout masks; CuPy's own generators keep their
    state on the GPU, out of reach of a checkpoint.
    """

    def __init__(self, seed=None):
        self.seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]) if seed is None else seed
        self.draws = 0

    @property
    def state(self):
        return {"seed": self.seed, "draws": self.draws}

    @state.setter
    def state(self, value):
        self.seed, self.draws = int(value["seed"]), int(value["draws"])

    def _key(self):
        key = _splitmix64((_splitmix64(self.seed & _MASK64) + self.draws) & _MASK64)
        self.draws += 1
        return key

    def random(self, shape, dtype=np.float64):
        """Uniform numbers in [0, 1), on the current device."""
        from .fast import cuda_kernels
        return cuda_kernels.uniform(shape, dtype, self._key())

    def standard_normal(self, shape, dtype=np.float64):
        """Normal numbers by Box and Muller's transform of two uniform draws, in float64."""
        xp = _cupy()
        radius = xp.sqrt(-2 * xp.log1p(-self.random(shape)))  # 1 - u is in (0, 1]: the log is finite
        return (radius * xp.cos((2 * np.pi) * self.random(shape))).astype(dtype, copy=False)


def add_at(target, index, values):
    """``target[index] += values``, a place named several times receiving every value: repeats summed in index order.

    NumPy's ``add.at`` adds the repeats one by one in index order. CuPy's adds
    them with atomics, in whatever order the GPU's threads arrive, so the
    rounding would differ from run to run and from the CPU. On a GPU, then,
    each value is ranked among the values that go to its place (0 for the
    first, 1 for the second, ...), and round r adds the values of rank r, the
    others contributing an exact 0: every place gets its sum in index order,
    the same bits every run and as NumPy's. It waits for the GPU once, to
    learn how many rounds there are. ``values`` has target's dtype and the
    shape of ``target[index]`` (or broadcasts to it); ``target`` may be a view.
    """
    if not is_cupy_array(target):
        np.add.at(target, index, values)
        return
    xp = get_array_module(target)
    with on_device_of(target):
        place = xp.arange(target.size).reshape(target.shape)[index]  # where each value goes in target, flattened
        values = xp.broadcast_to(values, place.shape).reshape(-1)
        place = place.reshape(-1)
        order = xp.argsort(place * values.size + xp.arange(values.size))  # by place, then by position
        place, values = place[order], values[order]
        rank = xp.arange(values.size) - xp.searchsorted(place, place, side="left")
        contiguous = xp.ascontiguousarray(target)  # target itself, unless target is a strided view
        flat = contiguous.reshape(-1)
        for r in range(int(rank.max()) + 1 if values.size else 0):
            xp.add.at(flat, place, xp.where(rank == r, values, 0))
        if contiguous is not target:
            target[...] = contiguous
