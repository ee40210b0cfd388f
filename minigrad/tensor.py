"""Tensor: an array, the gradient that backward fills in, and the node that made it.

Everything a user does with a tensor (``a + b``, ``x.sum()``, ``w.T``) calls a
``Function`` from ``minigrad.ops``; that call records the graph. The tensor
itself only holds:

- ``data``: the raw NumPy or CuPy array;
- ``grad``: a Tensor of the same shape, filled in by ``backward`` (leaves only);
- ``grad_fn``: the node that produced it (None for leaves, such as weights);
- ``requires_grad``: whether gradients should flow to it.
"""
import operator

import numpy as np

from . import autograd, backend
from .ops import elementwise, loss, matmul, reduce, shape


class Tensor:
    # Makes NumPy defer to us: ``np.float32(2) * t`` calls ``t.__rmul__``.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False):
        self.data = data if _is_array(data) else _from_python(data, None)
        self.grad = None
        self.grad_fn = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _from_array(cls, array):
        """Wrap an array that an op produced (no copy, no checks): the hot path."""
        tensor = cls.__new__(cls)
        tensor.data = array
        tensor.grad = None
        tensor.grad_fn = None
        tensor._requires_grad = False
        return tensor

    # ----- attributes ------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and not backend.is_floating(self.data.dtype):
            raise RuntimeError(
                f"only floating-point tensors can require gradients, this one is {self.data.dtype}; "
                "create it with dtype=mg.float32 (or float64)")
        if self.grad_fn is not None and bool(value) != self._requires_grad:
            # the graph already counts this tensor as a path to the leaves; cutting it here would
            # silently starve them of gradient, so, as in PyTorch, only a leaf's flag may change
            raise RuntimeError("requires_grad can only be changed on a leaf tensor; this one was computed "
                               f"by {self.grad_fn.name}: use .detach() to get a tensor outside the graph")
        self._requires_grad = bool(value)

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    def numel(self):
        return int(self.data.size)

    def size(self, axis=None):
        return self.shape if axis is None else self.shape[axis]

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        text = np.array2string(backend.as_numpy(self.data), separator=", ", prefix="tensor(")
        extras = []
        if self.dtype not in (backend.default_float_dtype, backend.int64, np.dtype(bool)):
            extras.append(f"dtype={self.dtype}")
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([text] + extras) + ")"

    # ----- conversion ------------------------------------------------------
    def numpy(self):
        """The values as a NumPy array (shares memory on the CPU, copied from a GPU)."""
        return backend.as_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only a tensor with one element has an item, this one has shape {self.shape}")
        return backend.as_numpy(self.data).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """The same data, cut off from the graph."""
        return Tensor._from_array(self.data)

    def to(self, device=None, dtype=None):
        """Move to a device and/or cast to a dtype, as a graph node so gradients follow."""
        if isinstance(device, str) or device is None:
            pass
        else:  # t.to(mg.float64): the one positional argument is a dtype
            device, dtype = None, device
        result = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            result = shape.Cast.apply(result, dtype=np.dtype(dtype))
        if device is not None and backend.parse_device(device) != self.device:
            result = shape.ToDevice.apply(result, device=backend.parse_device(device))
        return result

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def double(self):
        return self.to(dtype=backend.float64)

    def float(self):
        return self.to(dtype=backend.float32)

    # ----- autograd ----------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Fill in ``.grad`` of every leaf this tensor depends on.

        A scalar (a loss) needs no argument; otherwise ``grad`` is dL/d(self).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad and has no grad_fn: "
                "no input of the computation had requires_grad=True")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward(): grad can be implicitly created only for a scalar output, this one "
                    f"has shape {self.shape}; pass backward(grad) with a gradient of that shape")
            with backend.on_device_of(self.data):
                grad = backend.get_array_module(self.data).ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != self.shape:
                raise RuntimeError(f"backward(): grad has shape {tuple(grad.shape)} but the tensor has shape {self.shape}")
            grad = backend.to_device(grad, self.device)
            with backend.on_device_of(grad):
                grad = grad.astype(self.dtype, copy=False)
        autograd.backward(self, grad, retain_graph=retain_graph)

    # ----- arithmetic (with broadcasting) --------------------------------------
    def _operand(self, other):
        """Turn a Python number or array into a tensor on our device (numbers take our dtype)."""
        if isinstance(other, Tensor):
            return other
        xp = backend.get_array_module(self.data)
        with backend.on_device_of(self.data):
            if isinstance(other, (bool, int, float)):
                return Tensor._from_array(xp.asarray(other, dtype=self.dtype))
            return Tensor._from_array(xp.asarray(other))

    def _binary(self, op, other, reverse=False):
        """Apply a binary node; ``reverse`` for ``2 - t`` style calls (other op self)."""
        this = self
        if (isinstance(other, float) or op is elementwise.Div) and not backend.is_floating(self.dtype):
            this = self.to(dtype=backend.default_float_dtype)  # int tensor * 0.5 is float32, as in PyTorch
        other = this._operand(other)
        return op.apply(other, this) if reverse else op.apply(this, other)

    def __add__(self, other):
        return self._binary(elementwise.Add, other)

    def __radd__(self, other):
        return self._binary(elementwise.Add, other, reverse=True)

    def __sub__(self, other):
        return self._binary(elementwise.Sub, other)

    def __rsub__(self, other):
        return self._binary(elementwise.Sub, other, reverse=True)

    def __mul__(self, other):
        return self._binary(elementwise.Mul, other)

    def __rmul__(self, other):
        return self._binary(elementwise.Mul, other, reverse=True)

    def __truediv__(self, other):
        return self._binary(elementwise.Div, other)

    def __rtruediv__(self, other):
        return self._binary(elementwise.Div, other, reverse=True)

    def __pow__(self, other):
        return self._binary(elementwise.Pow, other)

    def __rpow__(self, other):
        return self._binary(elementwise.Pow, other, reverse=True)

    def __matmul__(self, other):
        return self._binary(matmul.MatMul, other)

    def __rmatmul__(self, other):
        return self._binary(matmul.MatMul, other, reverse=True)

    def __neg__(self):
        return elementwise.Neg.apply(self)

    def __pos__(self):
        return self

    # Comparisons give boolean tensors and record no graph. An array operand moves to
    # our device, as for ``+``; tensors on two devices are an error naming both.
    def _compare(self, other, op):
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise RuntimeError(f"comparison: the tensors are on two devices, {self.device} and "
                                   f"{other.device}; move one with .to(device)")
        elif not isinstance(other, (bool, int, float)):
            other = self._operand(other)
        other = other.data if isinstance(other, Tensor) else other
        with backend.on_device_of(self.data):
            return Tensor._from_array(op(self.data, other))

    def __eq__(self, other):
        return self._compare(other, operator.eq)

    def __ne__(self, other):
        return self._compare(other, operator.ne)

    def __lt__(self, other):
        return self._compare(other, operator.lt)

    def __le__(self, other):
        return self._compare(other, operator.le)

    def __gt__(self, other):
        return self._compare(other, operator.gt)

    def __ge__(self, other):
        return self._compare(other, operator.ge)

    __hash__ = object.__hash__  # __eq__ is elementwise, so hash by identity

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(backend.as_numpy(self.data))

    def any(self):
        with backend.on_device_of(self.data):
            return bool(backend.as_numpy(self.data.any()))

    def all(self):
        with backend.on_device_of(self.data):
            return bool(backend.as_numpy(self.data.all()))

    def __getitem__(self, index):
        return shape.GetItem.apply(self, index=_plain_index(index))

    # ----- methods (each also a function mg.NAME) -------------------------------
    def sum(self, axis=None, keepdims=False):
        return reduce.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return reduce.Mean.apply(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, keepdims=False, unbiased=False):
        """Variance; biased (divides by n) by default as NumPy and tf.nn.moments do."""
        return reduce.Var.apply(self, axis=axis, keepdims=keepdims, unbiased=unbiased)

    def max(self, axis=None, keepdims=False):
        return reduce.Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return Tensor._from_array(self.data.argmax(axis=axis))

    def reshape(self, *new_shape):
        if len(new_shape) == 1 and isinstance(new_shape[0], (tuple, list)):
            new_shape = tuple(new_shape[0])
        return shape.Reshape.apply(self, shape=new_shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        return shape.flatten(self, start_dim, end_dim)

    def transpose(self, *axes):
        """Reverse the axes; with two axes swap them (as torch.transpose); with all, permute."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return shape.Transpose.apply(self, axes=shape.transpose_axes(self.ndim, axes))

    def permute(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return shape.Transpose.apply(self, axes=axes)

    @property
    def T(self):
        return shape.Transpose.apply(self, axes=None)

    def exp(self):
        return elementwise.Exp.apply(self)

    def log(self):
        return elementwise.Log.apply(self)

    def sqrt(self):
        return elementwise.Sqrt.apply(self)

    def abs(self):
        return elementwise.Abs.apply(self)

    def clip(self, lo=None, hi=None):
        return elementwise.Clip.apply(self, lo=lo, hi=hi)

    clamp = clip

    def relu(self):
        return elementwise.ReLU.apply(self)

    def sigmoid(self):
        return elementwise.Sigmoid.apply(self)

    def tanh(self):
        return elementwise.Tanh.apply(self)

    def softmax(self, axis=-1):
        return loss.Softmax.apply(self, axis=axis)

    def log_softmax(self, axis=-1):
        return loss.LogSoftmax.apply(self, axis=axis)


def _plain_index(index):
    """Replace tensors inside an index by their arrays (t[idx] with idx a Tensor)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _is_array(data):
    return isinstance(data, np.ndarray) or backend.is_cupy_array(data)


def _from_python(data, dtype):
    """A NumPy array from Python data with PyTorch's dtype rules (floats -> float32)."""
    if dtype is not None:
        return np.array(data, dtype=np.dtype(dtype))
    if isinstance(data, np.generic):  # a NumPy scalar keeps its dtype
        return np.asarray(data)
    try:
        array = np.array(data)
    except ValueError as error:
        raise TypeError(f"tensor(): cannot make a tensor from this {type(data).__name__}: {error}") from None
    if backend.is_floating(array.dtype):
        return array.astype(backend.default_float_dtype)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(backend.int64)
    if array.dtype != bool:
        raise TypeError(f"tensor(): cannot make a tensor from data of dtype {array.dtype} "
                        "(expected numbers, nested lists of numbers, or an array)")
    return array


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (number, nested list, NumPy or CuPy array).

    Without ``dtype``: Python floats become float32 (the default), integers
    int64, and an array keeps its dtype, as ``torch.tensor`` does.
    """
    if isinstance(data, Tensor):
        data = data.data
    if _is_array(data):
        array = data.astype(np.dtype(dtype)) if dtype is not None else data.copy()
    else:
        array = _from_python(data, dtype)
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)
