"""Shape nodes: reshape, transpose, indexing, and moving between dtypes and devices.

None of these changes a value, only where it sits, so each backward puts the
gradient back where the value came from.
"""
import operator

import numpy as np

from ..errors import ShapeError
from .. import backend
from ..autograd import Function
from ..backend import get_array_module
from .common import ScatterAdd


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                             f"({x.size} elements) into {tuple(self.shape)}") from None

    def backward(self, grad):
        """Reshaping only renames positions: the gradient is the output's, in the input's shape."""
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
        """Undo the permutation: its inverse sends axis perm[i] back to i."""
        return Transpose.apply(grad, axes=self.inverse(grad.ndim))

    def inverse(self, ndim):
        return None if self.axes is None else tuple(int(i) for i in np.argsort([a % ndim for a in self.axes]))


class GetItem(Function):
    """``x[index]`` with ints, slices, None, Ellipsis and integer/boolean index arrays, as PyTorch reads it."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape = x.shape
        try:
            self.basic, self.advanced = split_index(self.index, x.shape)
            view = x[self.basic]
            return view if self.advanced is None else view[self.advanced]
        except IndexError as error:
            raise IndexError(f"getitem: {error} (tensor of shape {x.shape})") from None

    def backward(self, grad):
        """Each selected element's gradient goes back to where it was taken from (a scatter-add:
        an element picked twice, x[[0, 0]], receives the sum). Its own gradient is indexing again."""
        return ScatterAdd.apply(grad, shape=self.in_shape, basic=self.basic, advanced=self.advanced,
                                index=self.index)


def split_index(index, shape):
    """PyTorch's reading of ``x[index]`` as two NumPy steps: ``x[basic][advanced]`` (advanced None if no arrays).

    PyTorch applies the ints, slices, None and Ellipsis first, as basic
    indexing (a view; an int removes its axis), then the index arrays where
    they stand in that view. Both frameworks put the arrays' broadcast axes in
    place of the axes they index when the arrays sit next to each other, and
    first otherwise; but NumPy counts an int as one of the arrays, so
    ``x[:, idx, :, 0]`` has its idx axis first in NumPy and second in PyTorch.
    The split makes NumPy (and CuPy) index as PyTorch does. A Python bool, or a
    0-d boolean array, adds an axis of size 1 and indexes it with [0] (True)
    or [] (False); a 0-d integer array counts as an int.
    """
    parts = index if isinstance(index, tuple) else (index,)
    parts = [_index_array(part) if isinstance(part, list) else part for part in parts]
    kinds = [_kind(part) for part in parts]
    if kinds.count("ellipsis") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    named = sum(part.ndim if kind == "mask" else kind in ("int", "slice", "array")
                for part, kind in zip(parts, kinds))
    if named > len(shape):
        raise IndexError(f"too many indices: {named} for a tensor of {len(shape)} dimensions")
    basic, advanced = [], []  # advanced: one entry per axis of x[basic] (a mask: one entry for its axes)
    axis = 0  # the axis of x that the next part indexes
    for part, kind in zip(parts, kinds):
        if kind == "int":
            basic.append(int(part))
            axis += 1
        elif kind == "slice":
            basic.append(part)
            advanced.append(slice(None))
            axis += 1
        elif kind == "new":
            basic.append(None)
            advanced.append(slice(None))
        elif kind == "bool":
            basic.append(None)
            advanced.append(np.arange(int(bool(part))))  # [0] keeps the new axis' one element, [] none
        elif kind == "ellipsis":
            rest = len(shape) - named
            basic += [slice(None)] * rest
            advanced += [slice(None)] * rest
            axis += rest
        elif kind == "array":
            basic.append(slice(None))
            advanced.append(part)
            axis += 1
        else:  # a mask selects over as many axes as it has
            sizes = tuple(shape[axis:axis + part.ndim])
            if tuple(part.shape) != sizes:
                axes = f"axis {axis}" if part.ndim == 1 else f"axes {axis} to {axis + part.ndim - 1}"
                raise IndexError(f"the boolean mask of shape {tuple(part.shape)} does not match the "
                                 f"sizes {sizes} of the {axes} it indexes")
            basic += [slice(None)] * part.ndim
            advanced.append(part)
            axis += part.ndim
    if all(isinstance(entry, slice) for entry in advanced):
        return tuple(basic), None
    return tuple(basic), tuple(advanced)


def _index_array(part):
    """A list inside an index as an array (an empty list indexes nothing: int64, not NumPy's float64)."""
    array = np.asarray(part)
    return array.astype(np.int64) if array.size == 0 else array


def _kind(part):
    """What one part of an index does: int, slice, new (None), ellipsis, bool, array (integer) or mask."""
    if part is None:
        return "new"
    if part is Ellipsis:
        return "ellipsis"
    if isinstance(part, slice):
        return "slice"
    if isinstance(part, bool):
        return "bool"
    if hasattr(part, "dtype") and hasattr(part, "ndim"):  # a NumPy or CuPy array, or a NumPy scalar
        if part.dtype == bool:
            return "bool" if part.ndim == 0 else "mask"
        if part.dtype.kind in "iu":
            return "int" if part.ndim == 0 else "array"
        raise IndexError(f"index arrays must hold integers or booleans, got one of dtype {part.dtype}")
    try:
        operator.index(part)
    except TypeError:
        raise IndexError("only integers, slices, None, Ellipsis and integer or boolean arrays are valid "
                         f"indices, got {type(part).__name__} {part!r}") from None
    return "int"


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, grad):
        """A cast is the identity on values: the gradient comes back in the input's dtype."""
        return grad.to(self.in_dtype)


class ToDevice(Function):
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.in_device = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, grad):
        """A copy between devices: the gradient goes back to the input's device."""
        return grad.to(self.in_device)
