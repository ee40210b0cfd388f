"""CPU tuning: minigrad's own passes shared out among threads, and the C allocator kept from returning memory.

NumPy runs one copy or one elementwise line on one core, while BLAS uses
them all. The fast drop-ins split such passes along an axis (images,
channels, kernel offsets) and hand the parts to a pool of threads: big
array operations release Python's lock, so the parts do run side by side.
``mg.config.threads`` says how many (0: every core).

OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` (set by ``config``) when NumPy
loads it; ``reread_openblas_settings`` makes it read the variable again, so
that importing NumPy before minigrad loses nothing.
"""
import os
import threading

from .. import config
from ..backend import is_cupy_array


def openblas_libraries():
    """The paths of the OpenBLAS libraries this process has loaded (from /proc; none where there is no /proc)."""
    try:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return set()


def reread_openblas_settings():
    """Make an already loaded OpenBLAS read its environment variables again, the thread timeout among them.

    OpenBLAS exports ``openblas_read_env`` (which reads them) and
    ``blas_thread_shutdown_`` (its worker threads are started again, with the
    new timeout, at the next product). Returns True where it applied; where
    NumPy uses another BLAS, or on a system without /proc, nothing changes.
    """
    import ctypes
    for path in openblas_libraries():
        try:
            library = ctypes.CDLL(path)  # the copy already loaded: the same handle
            read_env, shutdown = library.openblas_read_env, library.blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        read_env()
        shutdown()
        return True
    return False


def reuse_host_memory():
    """Ask the C allocator to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates the same large NumPy temporaries every time
    (im2col's columns, activations, their gradients). glibc hands blocks of
    more than 128 KiB to the OS when they are freed, so the next step
    page-faults them back in, a cost that grows with the batch. Raising
    malloc's mmap and trim thresholds (``mallopt``) keeps them in the heap,
    at the price of the process keeping its peak memory (the gain is measured
    in docs/performance.md). The same effect from the shell:
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


_workers, _pool_size = None, 0


def cpu_threads():
    """How many threads the fast passes use: ``mg.config.threads``, 0 meaning every core."""
    return max(1, config.threads or os.cpu_count() or 1)


def run_in_parallel(work, items, array):
    """Call ``work(part)`` on consecutive parts of the list ``items``, one part per thread, for an op on ``array``.

    NumPy runs one copy or addition on one core, while BLAS uses them all.
    Big strided copies (im2col, col2im) release Python's lock while they run,
    so threads that each copy a disjoint part of an array do use every core.
    Each ``work`` must write only its own part, so the result is the same as
    running the parts one after another. CuPy arrays get one call with every
    item: the GPU runs the copies asynchronously anyway.
    """
    global _workers, _pool_size
    items = list(items)
    threads = min(cpu_threads(), len(items))
    # inside a worker already (an op split among threads calling another): the
    # workers are all busy with the outer parts, so waiting for them would hang
    nested = threading.current_thread().name.startswith("minigrad")
    if is_cupy_array(array) or threads <= 1 or nested:
        work(items)
        return
    if _pool_size < threads:  # the first call, or mg.config.threads raised since
        from concurrent.futures import ThreadPoolExecutor
        if _workers is not None:
            _workers.shutdown(wait=False)
        _workers, _pool_size = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minigrad"), threads
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


if config.numpy_loaded_first:  # OpenBLAS read its settings before config set the timeout
    reread_openblas_settings()
