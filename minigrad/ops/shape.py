"""Shape nodes: reshape, transpose, indexing, and moving between dtypes and devices.

None of these changes a value, only where it sits, so each backward puts the
gradient back where the value came from.
"""
import numpy as np

from .. import backend
from ..autograd import Function
from ..backend import get_array_module


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                             f"({x.size} elements) into {tuple(self.shape)}") from None

    def backward(self, grad):
        # the same numbers in the input's shape
        return grad.reshape(self.in_shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim into one (``Flatten`` keeps the batch axis: start_dim=1)."""
    ndim = max(x.ndim, 1)
    start, end = start_dim % ndim, end_dim % ndim
    if not (-ndim <= start_dim < ndim and -ndim <= end_dim < ndim) or start > end:
        raise ValueError(f"flatten: start_dim={start_dim}, end_dim={end_dim} do not fit a tensor of shape {x.shape}")
    shape = x.shape[:start] + (-1,) + x.shape[end + 1:]
    return Reshape.apply(x, shape=shape)


def transpose_axes(ndim, axes):
    """The permutation for ``t.transpose(*axes)``: none reverses, two swap (as PyTorch), all permute."""
    if len(axes) == 0:
        return None
    if len(axes) == 2:
        perm = list(range(ndim))
        try:
            perm[axes[0]], perm[axes[1]] = perm[axes[1]], perm[axes[0]]
        except IndexError:
            raise ValueError(f"transpose: axes {axes} are out of range for {ndim} dimensions") from None
        return tuple(perm)
    return tuple(axes)


class Transpose(Function):
    """Permute axes (None reverses them)."""

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None and sorted(a % max(x.ndim, 1) for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: {tuple(self.axes)} is not a permutation of the "
                             f"{x.ndim} axes of a tensor of shape {x.shape}")
        return x.transpose(self.axes)

    def backward(self, grad):
        # undo the permutation: the inverse of perm sends axis perm[i] back to i
        if self.axes is None:
            return grad.transpose()
        return grad.transpose(tuple(np.argsort([a % grad.ndim for a in self.axes])))


def _has_array(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(part, "shape") and part.ndim > 0 for part in parts)


class GetItem(Function):
    """``x[index]`` with basic (ints, slices, None, ...) or integer/boolean array indexing."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        try:
            return x[self.index]
        except IndexError as error:
            raise IndexError(f"getitem: {error} (tensor of shape {x.shape})") from None

    def backward(self, grad):
        # each selected element's gradient goes back to where it was taken from;
        # an element picked twice (x[[0, 0]]) receives the sum, hence add.at
        xp = get_array_module(grad)
        full = xp.zeros(self.in_shape, dtype=grad.dtype)
        if not _has_array(self.index):
            full[self.index] = grad
        elif backend.is_cupy_array(grad):
            _add_at_in_order(full, self.index, grad)
        else:
            xp.add.at(full, self.index, grad)
        return full


def _add_at_in_order(full, index, grad):
    """``add.at(full, index, grad)`` on a GPU, adding repeats in the order NumPy's add.at adds them.

    CuPy's add.at adds repeated indices with atomics, in whatever order the
    threads arrive, so the rounding differs from run to run. Here element k of
    grad is ranked among the elements that go to the same place (rank 0 for
    the first one, 1 for the second, ...), and round r adds the elements of
    rank r, the others contributing an exact 0: every place gets its sum in
    index order, the same bits every run and as on the CPU. It waits for the
    GPU once, to learn how many rounds there are.
    """
    xp = get_array_module(grad)
    place = xp.arange(full.size).reshape(full.shape)[index].reshape(-1)  # where each element of grad goes
    values = grad.reshape(-1)
    order = xp.argsort(place * values.size + xp.arange(values.size))  # by place, then by position in grad
    place, values = place[order], values[order]
    rank = xp.arange(values.size) - xp.searchsorted(place, place, side="left")
    flat = full.reshape(-1)
    for r in range(int(rank.max()) + 1 if values.size else 0):
        xp.add.at(flat, place, xp.where(rank == r, values, 0))


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, grad):
        return grad.astype(self.in_dtype)


class ToDevice(Function):
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.in_device = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, grad):
        return backend.to_device(grad, self.in_device)
