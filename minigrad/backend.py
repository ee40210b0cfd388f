"""NumPy or CuPy: the one place that knows which array library holds the data.

Every op asks ``get_array_module(array)`` for ``xp`` and then writes
``xp.exp(x)``, ``xp.matmul(a, b)`` and so on, so the same line runs on the CPU
(NumPy) and on an NVIDIA GPU (CuPy). CuPy is imported only when a tensor is
put on ``"cuda"``: a CPU-only install never touches it.
"""
import contextlib
import numbers
import os
import threading

# OpenBLAS's idle worker threads spin for about 0.1 s (2^28 cycles) after every
# matrix product, holding a core that minigrad's own threaded passes (BatchNorm,
# pooling, the convolution's copies) then wait for: on 2 cores a max-pool right
# after a product took 10.4 ms instead of 5.8. 2^20 cycles, well under a
# millisecond, keeps them awake between the products of one layer but not into
# the next op: mnist_bn and cifar_bn training steps were 10-17% faster
# (docs/performance.md; 2^4, sleeping at once, made mnist_bn slower). OpenBLAS
# reads it when NumPy loads it, so it counts only if minigrad is imported
# before NumPy; a value already in the environment is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import numpy as np  # noqa: E402  (after the line above, on purpose)

# dtype aliases users write as ``mg.float32``; a np.dtype compares equal to
# np.float32, "float32" and the dtype of a NumPy array alike.
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
default_float_dtype = float32


# Float32 matrix products on the GPU round as cuBLAS does in float32, never in TF32
# (10-bit mantissas), whatever $CUPY_TF32 says: the GPU must compute what the CPU
# computes. Set to True before the first GPU op to trade that for speed.
ALLOW_TF32 = False
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
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if ALLOW_TF32 else linalg.COMPUTE_TYPE_DEFAULT)


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
    mixed from the seed and k, in one kernel (kernels_cuda ``uniform``). As
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
        from .ops import kernels_cuda
        return kernels_cuda.uniform(shape, dtype, self._key())

    def standard_normal(self, shape, dtype=np.float64):
        """Normal numbers by Box and Muller's transform of two uniform draws, in float64."""
        xp = _cupy()
        radius = xp.sqrt(-2 * xp.log1p(-self.random(shape)))  # 1 - u is in (0, 1]: the log is finite
        return (radius * xp.cos((2 * np.pi) * self.random(shape))).astype(dtype, copy=False)


def reuse_host_memory():
    """Ask the C allocator to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates the same large NumPy temporaries every time
    (im2col's columns, activations, their gradients). glibc hands blocks of
    more than 128 KiB to the OS when they are freed, so the next step
    page-faults them back in, a cost that grows with the batch. Raising
    malloc's mmap and trim thresholds (``mallopt``) keeps them in the heap:
    about 15% off a batch-256 ``mnist_bn`` step on 2 cores, at the price of
    the process keeping its peak memory. The same effect from the shell:
    ``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=2000000000``.
    Returns True where it applied (Linux with glibc), False elsewhere.
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_trim_threshold, 2_000_000_000) and mallopt(m_mmap_threshold, 1_000_000_000))


_workers = None


def cpu_threads():
    """How many threads minigrad's own copy loops use: $MINIGRAD_NUM_THREADS, else every core."""
    return max(1, int(os.environ.get("MINIGRAD_NUM_THREADS", 0)) or os.cpu_count() or 1)


def run_in_parallel(work, items, array):
    """Call ``work(part)`` on consecutive parts of the list ``items``, one part per thread, for an op on ``array``.

    NumPy runs one copy or addition on one core, while BLAS uses them all.
    Big strided copies (im2col, col2im) release Python's lock while they run,
    so threads that each copy a disjoint part of an array do use every core.
    Each ``work`` must write only its own part, so the result is the same as
    running the parts one after another. CuPy arrays get one call with every
    item: the GPU runs the copies asynchronously anyway.
    """
    global _workers
    items = list(items)
    threads = min(cpu_threads(), len(items))
    # inside a worker already (an op split among threads calling another): the
    # workers are all busy with the outer parts, so waiting for them would hang
    nested = threading.current_thread().name.startswith("minigrad")
    if is_cupy_array(array) or threads <= 1 or nested:
        work(items)
        return
    if _workers is None:
        from concurrent.futures import ThreadPoolExecutor
        _workers = ThreadPoolExecutor(max_workers=cpu_threads(), thread_name_prefix="minigrad")
    parts = [items[k * len(items) // threads:(k + 1) * len(items) // threads] for k in range(threads)]
    # the calling thread does the first part itself: one hand-over less per call
    futures = [_workers.submit(work, part) for part in parts[1:]]
    work(parts[0])
    for future in futures:
        future.result()


# Below this many values, handing parts to threads costs more than it saves.
PARALLEL_SIZE = 1 << 17


def run_on_slices(work, n, array, min_size=0):
    """Call ``work(part)`` for consecutive slices ``part`` of range(n), one slice per thread (see ``run_in_parallel``).

    For an op on ``array`` that splits along one axis: the images of a batch,
    a run of channels, the entries of a flattened weight. CuPy arrays, and
    arrays of fewer than ``min_size`` values, get one call with the whole range.
    """
    small = array.size < min_size
    threads = 1 if small or is_cupy_array(array) else max(1, min(cpu_threads(), n))
    bounds = [k * n // threads for k in range(threads + 1)]

    def work_on(parts):
        for start, stop in parts:
            work(slice(start, stop))
    run_in_parallel(work_on, zip(bounds[:-1], bounds[1:]), array)
