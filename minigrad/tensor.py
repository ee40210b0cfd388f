"""Tensor: an array, the gradient that backward fills in, and the node that made it.

Everything a user does with a tensor (``a + b``, ``x.sum()``, ``w.T``) calls a
``Function`` from ``minigrad.ops``; that call records the graph. The tensor
itself only holds:

- ``data``: the raw NumPy or CuPy array;
- ``grad``: a Tensor of the same shape, filled in by ``backward`` (leaves only);
- ``grad_fn``: the node that produced it (None for leaves, such as weights);
- ``requires_grad``: whether gradients should flow to it;
- a version: how many times its array was changed in place, so that a
  backward that saved the old values can refuse to use them (``autograd``).

In-place arithmetic (``x += 1``, ``w -= lr * w.grad``) follows PyTorch where it
can: inside ``mg.no_grad()``, or when no tensor involved requires grad, it
writes into the tensor's own array and counts a new version; on a leaf that
requires grad it is an error outside ``no_grad``. Where PyTorch would record an
in-place node (a computed tensor, or an operand that requires grad), minigrad
computes out of place and rebinds the name: other references to the old
tensor do not see the change.

Type promotion is PyTorch's, not NumPy's: int64 + float32 is float32, and
``exp`` of an integer tensor is float32 (see ``result_type``).
"""
import numbers
import operator

import numpy as np

from . import autograd, backend
from .ops import elementwise, loss, matmul, reduce, shape


class Tensor:
    # Makes NumPy defer to us: ``np.float32(2) * t`` calls ``t.__rmul__``.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False):
        self.data = _checked_dtype(data) if backend.is_array(data) else _from_python(data, None)
        self.grad = None
        self.grad_fn = None
        self._requires_grad = False
        self._version_counter = autograd.Version()
        self.requires_grad = requires_grad

    @classmethod
    def _from_array(cls, array):
        """Wrap an array that an op produced (no copy, no checks): the hot path."""
        tensor = cls.__new__(cls)
        tensor.data = array
        tensor.grad = None
        tensor.grad_fn = None
        tensor._requires_grad = False
        tensor._version_counter = autograd.Version()
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

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` in place and return the tensor (PyTorch's method; leaves only)."""
        self.requires_grad = requires_grad
        return self

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

    @property
    def _version(self):
        """How many in-place changes this tensor's array has had (PyTorch's ``t._version``)."""
        return self._version_counter.count

    def _bump_version(self):
        """Count one in-place change of ``self.data``.

        Code that writes into the array itself (an optimizer step, an init
        function, ``load_state_dict``) calls this, so that a backward over a
        graph that saved the old values raises instead of using the new ones.
        """
        self._version_counter.count += 1

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

    def item(self, caller="item()"):
        if self.data.size != 1:
            raise ValueError(f"{caller}: only a tensor with one element has an item (only one element tensors "
                             f"can be converted to Python scalars), this one has shape {self.shape}")
        return backend.as_numpy(self.data).item()

    def __float__(self):
        return float(self.item("float()"))

    def __int__(self):
        return int(self.item("int()"))  # truncates towards zero, as int(2.7) and PyTorch do

    def __index__(self):
        """``[10, 20, 30][t]``, ``range(t)``: a one-element integer (or bool) tensor, as PyTorch allows."""
        if self.dtype.kind not in "biu" or self.data.size != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an index, "
                            f"this one is {self.dtype} of shape {self.shape}")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)``: the CPU tensor's array itself (no copy unless asked). A GPU tensor is refused:
        copying from the device is spelt out with ``.numpy()`` or ``.cpu()``, as PyTorch asks."""
        if self.device != "cpu":
            raise TypeError(f"can't convert a {self.device} tensor to a NumPy array implicitly: use t.numpy() "
                            "(or t.cpu()) to copy it to host memory first")
        return np.array(self.data, dtype=dtype, copy=copy)

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """The same data, cut off from the graph (with the same version: an in-place change to one counts for both)."""
        detached = Tensor._from_array(self.data)
        detached._version_counter = self._version_counter
        return detached

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
    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Fill in ``.grad`` of every leaf this tensor depends on.

        A scalar (a loss) needs no argument; otherwise ``grad`` is dL/d(self).
        With ``create_graph=True`` the backward pass is itself recorded, so
        each ``.grad`` is a tensor in the graph that can be differentiated
        again (the graph is then kept, as with ``retain_graph``).
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
        elif create_graph and isinstance(grad, Tensor):  # kept as a tensor: it may be in a graph itself
            if grad.shape != self.shape:
                raise RuntimeError(f"backward(): grad has shape {grad.shape} but the tensor has shape {self.shape}")
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != self.shape:
                raise RuntimeError(f"backward(): grad has shape {tuple(grad.shape)} but the tensor has shape {self.shape}")
            grad = backend.to_device(grad, self.device)
            with backend.on_device_of(grad):
                grad = grad.astype(self.dtype, copy=False)
        autograd.backward(self, grad, retain_graph=retain_graph or create_graph, create_graph=create_graph)

    # ----- arithmetic (with broadcasting) --------------------------------------
    def _operand(self, other, dtype=None):
        """Turn a Python number or array into a tensor on our device (a number in ``dtype``, else ours)."""
        if isinstance(other, Tensor):
            return other
        xp = backend.get_array_module(self.data)
        with backend.on_device_of(self.data):
            if _is_python_number(other):
                return Tensor._from_array(xp.asarray(other, dtype=dtype or self.dtype))
            return Tensor._from_array(_checked_dtype(xp.asarray(other)))

    def _cast(self, dtype):
        """This tensor in ``dtype``, as a graph node so that a gradient flows back in our dtype."""
        return self if self.dtype == dtype else shape.Cast.apply(self, dtype=dtype)

    def _floating(self):
        """This tensor if it is floating point, else in the default float dtype (``softmax`` of int64 is float32)."""
        return self if backend.is_floating(self.dtype) else self._cast(backend.default_float_dtype)

    def _binary(self, op, other, reverse=False):
        """Apply a binary node; ``reverse`` for ``2 - t`` style calls (other op self).

        Both operands are first brought to PyTorch's result type (``result_type``);
        division of integers is float32, as PyTorch's true division.
        """
        if op is matmul.MatMul:  # products refuse mixed dtypes themselves, as PyTorch's do
            other = self._operand(other)
            return op.apply(other, self) if reverse else op.apply(self, other)
        if not (isinstance(other, Tensor) or _is_python_number(other)):
            other = self._operand(other)  # an array: a tensor on our device
        dtype = result_type(self, other)
        if op is elementwise.Div and not backend.is_floating(dtype):
            dtype = backend.default_float_dtype
        if (op is elementwise.Pow and not reverse and _is_python_number(other) and not isinstance(other, bool)
                and other < 0 and dtype.kind in "biu"):
            raise RuntimeError(f"pow: Integers to negative integer powers are not allowed (a tensor of dtype {self.dtype} "
                               f"to the power {other}); use a float tensor, e.g. t.float() ** {other}")
        this, other = self._cast(dtype), self._operand(other, dtype)._cast(dtype)
        return op.apply(other, this) if reverse else op.apply(this, other)

    def _in_place(self, op, other, symbol):
        """``self <symbol> other`` (``+=`` ...): into our own array where PyTorch would, else out of place.

        Outside ``no_grad`` a leaf that requires grad refuses (its gradient would
        describe values it no longer holds); a computed tensor, or any operand
        that requires grad, gets the result out of place as a new graph node, to
        which Python rebinds the name. Otherwise the result, in PyTorch's result
        type, must fit our shape and cast to our dtype; it is written into our
        array and the version goes up, so that a backward that saved the old
        values raises.
        """
        if autograd.is_grad_enabled():
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(
                    f"a leaf Variable that requires grad is being used in an in-place operation ({symbol}, "
                    f"shape {self.shape}); update it inside `with mg.no_grad():`, as an optimizer step does")
            if self.requires_grad or (isinstance(other, Tensor) and other.requires_grad):
                return self._binary(op, other)
        result = self._binary(op, other)
        if _category(result.dtype) > _category(self.dtype):
            raise RuntimeError(f"{symbol}: result type {result.dtype} can't be cast to the desired output type "
                               f"{self.dtype} of the tensor changed in place; write t = t {symbol[:-1]} other instead")
        if result.shape != self.shape:
            raise RuntimeError(f"{symbol}: output with shape {self.shape} doesn't match the broadcast shape "
                               f"{result.shape}; write t = t {symbol[:-1]} other for a tensor of the new shape")
        if not getattr(self.data.flags, "writeable", True):
            raise RuntimeError(f"{symbol}: this tensor's array (shape {self.shape}) is read-only, so it cannot "
                               f"change in place; write t = t {symbol[:-1]} other instead")
        with backend.on_device_of(self.data):
            self.data[...] = result.data
        self._bump_version()
        return self

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

    def __iadd__(self, other):
        return self._in_place(elementwise.Add, other, "+=")

    def __isub__(self, other):
        return self._in_place(elementwise.Sub, other, "-=")

    def __imul__(self, other):
        return self._in_place(elementwise.Mul, other, "*=")

    def __itruediv__(self, other):
        return self._in_place(elementwise.Div, other, "/=")

    def __ipow__(self, other):
        return self._in_place(elementwise.Pow, other, "**=")

    def __neg__(self):
        return elementwise.Neg.apply(self)

    def __pos__(self):
        return self

    # Comparisons give boolean tensors and record no graph. An array operand moves to
    # our device, as for ``+``; tensors on two devices are an error naming both.
    def _compare(self, other, op):
        if other is None or isinstance(other, str):
            return NotImplemented  # Python's answer: t == None is False, t < None a TypeError (as PyTorch)
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

    def var(self, axis=None, keepdims=False, unbiased=False, correction=None):
        """Variance: divides by n - correction; ``correction`` overrides ``unbiased`` (1) as in PyTorch.

        Biased (divides by n) by default, as NumPy and tf.nn.moments do.
        """
        return reduce.Var.apply(self, axis=axis, keepdims=keepdims, unbiased=unbiased, correction=correction)

    def max(self, axis=None, keepdims=False):
        return reduce.Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return Tensor._from_array(reduce.argmax(self.data, axis))

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
        """Clamp into [lo, hi], as torch.clamp: with lo > hi every element becomes hi; an int tensor with a
        float bound becomes float32."""
        bounds = [bound for bound in (lo, hi) if bound is not None]
        for bound in bounds:
            if not isinstance(bound, numbers.Real):
                raise TypeError(f"clip: the bounds must be numbers, got {type(bound).__name__}")
        dtype = result_type(self, *bounds)  # the bounds count as Python numbers do
        return elementwise.Clip.apply(self._cast(dtype), lo=lo, hi=hi)

    clamp = clip

    def relu(self):
        """max(x, 0)."""
        return elementwise.ReLU.apply(self)

    def sigmoid(self):
        """1 / (1 + e^-x)."""
        return elementwise.Sigmoid.apply(self)

    def tanh(self):
        """(e^x - e^-x) / (e^x + e^-x)."""
        return elementwise.Tanh.apply(self)

    def softmax(self, axis=-1):
        """e^x / sum e^x along ``axis`` (PyTorch calls it ``dim``)."""
        return loss.Softmax.apply(self._floating(), axis=axis)

    def log_softmax(self, axis=-1):
        """log softmax(x), computed stably as x - max - log sum e^(x - max)."""
        return loss.LogSoftmax.apply(self._floating(), axis=axis)


def _plain_index(index):
    """Replace tensors inside an index by their arrays (t[idx] with idx a Tensor)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index  # lists are made arrays by shape.split_index


# ----- type promotion, as PyTorch's ---------------------------------------------------
# Three categories, bool < integer < floating. Within one the wider dtype wins
# (NumPy's promote_types); across them the higher category's dtype wins, so
# int64 + float32 is float32 (NumPy would say float64). Tensors with
# dimensions outrank 0-d tensors, which outrank Python numbers: a lower rank
# matters only if it is of a higher category, and then it brings its own dtype
# (a 0-d tensor) or the default one (a Python float is float32, an int int64).
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def _category(dtype):
    return _CATEGORY[dtype.kind]


def _promote(a, b):
    """PyTorch's promote_types for two dtypes (None: no operand of that rank yet)."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if _category(a) == _category(b):
        return np.promote_types(a, b)
    return a if _category(a) > _category(b) else b


def _outranked(higher, lower):
    """The dtype of operands of two ranks together: the higher rank's unless the lower is of a higher category."""
    if higher is None:
        return lower
    if lower is None or _category(higher) >= _category(lower):
        return higher
    return lower


def _is_python_number(value):
    return isinstance(value, (bool, int, float))


def result_type(*operands):
    """The dtype of an elementwise op on ``operands`` (Tensors and numbers), as ``torch.result_type``."""
    with_dims = zero_dim = number = None
    for operand in operands:
        if isinstance(operand, Tensor):
            if operand.ndim:
                with_dims = _promote(with_dims, operand.dtype)
            else:
                zero_dim = _promote(zero_dim, operand.dtype)
        elif isinstance(operand, (bool, np.bool_)):
            number = _promote(number, np.dtype(bool))
        elif isinstance(operand, numbers.Integral):
            number = _promote(number, backend.int64)
        elif isinstance(operand, numbers.Real):
            number = _promote(number, backend.default_float_dtype)
        else:
            raise TypeError(f"result_type: expected Tensors or real numbers, got a {type(operand).__name__}")
    return _outranked(with_dims, _outranked(zero_dim, number))


# ----- making tensors ------------------------------------------------------------------
def _checked_dtype(array):
    """The array itself if it holds numbers minigrad computes with (bool, integers, floats), else a TypeError."""
    if array.dtype.kind not in _CATEGORY:
        what = {"U": "strings", "S": "byte strings", "O": "Python objects (mixed types or ragged nested lists)",
                "c": "complex numbers (minigrad has no complex dtypes)"}.get(array.dtype.kind, "non-numbers")
        raise TypeError(f"tensor(): cannot make a tensor from an array of dtype {array.dtype}, which holds {what}; "
                        "expected bool, integer or floating-point numbers")
    return array


def _from_python(data, dtype):
    """A NumPy array from Python data with PyTorch's dtype rules (floats -> float32)."""
    try:
        array = np.asarray(data) if isinstance(data, np.generic) else np.array(data)
    except ValueError as error:
        raise TypeError(f"tensor(): cannot make a tensor from this {type(data).__name__} (ragged nested lists, "
                        f"rows of different lengths?): {error}") from None
    _checked_dtype(array)
    if dtype is not None:
        return _checked_dtype(array.astype(np.dtype(dtype)))
    if isinstance(data, np.generic):  # a NumPy scalar keeps its dtype
        return array
    if backend.is_floating(array.dtype):
        return array.astype(backend.default_float_dtype)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(backend.int64)
    return array


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (number, nested list, NumPy or CuPy array).

    Without ``dtype``: Python floats become float32 (the default), integers
    int64, and an array keeps its dtype, as ``torch.tensor`` does.
    """
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_array(data):
        _checked_dtype(data)
        array = _checked_dtype(data.astype(np.dtype(dtype))) if dtype is not None else data.copy()
    else:
        array = _from_python(data, dtype)
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def forget_grads(tensors, set_to_none=True):
    """``zero_grad`` of a Module and of an Optimizer: each gradient set to None (PyTorch's default) or to zeros."""
    for t in tensors:
        if set_to_none:
            t.grad = None
        elif t.grad is not None:
            with backend.on_device_of(t.data):
                t.grad = Tensor._from_array(backend.get_array_module(t.data).zeros_like(t.data))
