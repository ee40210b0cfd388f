"""Reductions: sum, mean, var, max over some axes (or all), and argmax.

Each output element depends on a group of input elements; backward spreads
the output's gradient back over its group. ``expand`` puts the reduced axes
back (as size 1) so that the gradient broadcasts against the input.

The edge cases are PyTorch's: a 0-d tensor has one axis to name (0 or -1),
over which a reduction changes nothing; the mean and variance of an empty
group are nan; its maximum is an error.
"""
import numbers
import operator

from .. import backend
from ..autograd import Function
from ..backend import get_array_module
from .common import broadcast_to, constant


class AxisError(IndexError, ValueError):
    """An axis the tensor does not have: an IndexError as in PyTorch, a ValueError as in NumPy."""


class EmptyReductionError(RuntimeError, IndexError, ValueError):
    """The maximum (or argmax) of no elements: PyTorch raises RuntimeError or IndexError, NumPy ValueError."""


def normalize_axes(axis, ndim, op):
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of the axes to reduce.

    A 0-d tensor accepts axis 0 or -1, as in PyTorch, and has nothing to reduce: ().
    """
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    low, high = -max(ndim, 1), max(ndim, 1) - 1
    result = []
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}") from None
        if not low <= a <= high:
            raise AxisError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions "
                            f"(expected an axis in [{low}, {high}])")
        result.append(a % max(ndim, 1))
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: axis {axis} names the same axis twice")
    return tuple(sorted(result)) if ndim else ()


def check_not_empty(shape, axes, axis, op):
    """Raise if a group to reduce has no elements: it has no maximum (nor argmax)."""
    if all(shape[a] != 0 for a in axes):
        return
    what = "maximum" if op == "max" else "largest element"
    if axis is None:
        raise EmptyReductionError(f"{op}: cannot take the {what} of an empty tensor (shape {shape}); "
                                  "reduce over an axis of nonzero size instead, if it has one")
    empty = [a for a in axes if shape[a] == 0]
    raise EmptyReductionError(f"{op}: cannot reduce over axis {empty[0]}, of size 0 (tensor of shape "
                              f"{shape}): a group of no elements has no {what}")


def divide(array, divisor):
    """``array / divisor`` for a Python number, IEEE's way when it is 0 (x/0 = +-inf, 0/0 = nan).

    NumPy would warn about 0 and Python raise; CuPy has no errstate to silence
    the warning, so the division by 0 is written as a product with inf.
    """
    if divisor != 0:
        return array / divisor
    xp = get_array_module(array)
    return xp.where(array == 0, xp.nan, array) * xp.inf


class _Reduction(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def _setup(self, x):
        self.axes = normalize_axes(self.axis, x.ndim, self.name.lower())
        self.in_shape = x.shape
        self.out_shape = tuple(1 if i in self.axes else size for i, size in enumerate(x.shape)
                               if self.keepdims or i not in self.axes)
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]

    def kept_shape(self):
        """The output's shape with the reduced axes kept as 1s, so that it broadcasts against the input."""
        return tuple(1 if i in self.axes else size for i, size in enumerate(self.in_shape))

    def _nan(self, x):
        """The result for empty groups (mean and variance): nan, as in PyTorch, without NumPy's warning."""
        xp = get_array_module(x)
        return xp.full(self.out_shape, xp.nan, dtype=x.dtype if backend.is_floating(x.dtype) else backend.float64)


class Sum(_Reduction):
    def forward(self, x):
        self._setup(x)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        """Every input element adds to its group's sum with slope 1: each gets its group's gradient."""
        return broadcast_to(grad.reshape(self.kept_shape()), self.in_shape)


class Mean(_Reduction):
    def forward(self, x):
        self._setup(x)
        if self.count == 0:  # the mean of no elements is 0 / 0
            return self._nan(x)
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        """mean = sum / n, so each element gets its group's gradient / n."""
        if self.count == 0:  # the input has no elements to send a gradient to
            return constant(get_array_module(grad.data).zeros(self.in_shape, dtype=grad.dtype))
        return broadcast_to(grad.reshape(self.kept_shape()), self.in_shape) / self.count


class Var(_Reduction):
    """Variance over ``axis``: sum (x - mean)^2 / (n - correction), as torch.var.

    ``correction`` overrides ``unbiased``, which means correction 1 (else 0:
    the biased variance, as NumPy's and tf.nn.moments'). Where n - correction
    <= 0 the result is inf, or nan for a group of equal values; over an empty
    group nan; and the gradients are PyTorch's in those cases too.
    """

    def __init__(self, axis=None, keepdims=False, unbiased=False, correction=None):
        super().__init__(axis, keepdims)
        if correction is None:
            correction = 1 if unbiased else 0
        elif not isinstance(correction, numbers.Real):
            raise TypeError(f"var: correction must be an int or a float, got {type(correction).__name__}")
        self.correction = correction

    def forward(self, x):
        self._setup(x)
        if self.count == 0:  # its mean is 0 / 0
            return self._nan(x)
        centered = x - x.mean(axis=self.axes, keepdims=True)
        self.save_for_backward(centered)
        squares = (centered * centered).sum(axis=self.axes, keepdims=self.keepdims)
        return divide(squares, max(self.count - self.correction, 0))

    def backward(self, grad):
        """var = sum (x_i - mean)^2 / d with d = n - correction, so d var/d x_i = 2 (x_i - mean) / d
        (the mean's own dependence on x_i drops out: sum (x_j - mean) = 0). With nothing to divide by
        (d <= 0) or no elements, the gradient is PyTorch's inf/NaN pattern, a constant."""
        dof = self.count - self.correction
        if self.count == 0 or dof <= 0:
            return constant(self.grad_without_divisor(grad.data))
        x, = self.inputs
        centered = x - x.mean(axis=self.axes, keepdims=True)
        return broadcast_to(grad.reshape(self.kept_shape()), self.in_shape) * (2 / dof) * centered

    def grad_without_divisor(self, grad):
        """The gradient (an array) where d = n - correction <= 0 or there are no elements, as PyTorch's.

        Over the whole tensor with d <= 0, PyTorch gives grad * inf, NaN where x_i equals the mean;
        over an axis, d = 0 gives 2 grad (x_i - mean) / 0 and d < 0 keeps the formula.
        """
        xp = get_array_module(grad)
        if self.count == 0:  # the input has no elements to send a gradient to
            return xp.zeros(self.in_shape, dtype=grad.dtype)
        centered, = self.saved
        grad = grad.reshape(self.kept_shape())
        dof = self.count - self.correction
        if self.axis is None or len(self.in_shape) == 0:
            # grad * inf, and grad * nan where x_i equals the mean (written so that 0 * inf warns of nothing)
            slope = xp.where(centered == 0, xp.nan, xp.inf).astype(centered.dtype, copy=False)
            return xp.where(grad == 0, xp.nan, grad) * slope
        if dof == 0:
            return divide(2 * grad * centered, 0)  # 2 / 0 = inf: +-inf, and nan where grad or x_i - mean is 0
        return grad * (2 / dof) * centered  # d < 0 (over an axis) keeps the formula, as PyTorch does


class Max(_Reduction):
    """Maximum over ``axis``; ties share the gradient equally (as torch.amax)."""

    def forward(self, x):
        self._setup(x)
        check_not_empty(x.shape, self.axes, self.axis, "max")
        out = x.max(axis=self.axes, keepdims=True)
        self.save_for_backward(x, out)
        return out.reshape(self.out_shape)

    def backward(self, grad):
        """Slope 1 for the largest element of each group, 0 for the others; ties share it equally."""
        return broadcast_to(grad.reshape(self.kept_shape()), self.in_shape) * constant(self.shares())

    def shares(self):
        """Each element's share of its group's gradient: 1/k for the k elements equal to the maximum, else 0."""
        x, out = self.saved
        winners = x == out
        return (winners / winners.sum(axis=self.axes, keepdims=True)).astype(x.dtype, copy=False)


def argmax(array, axis=None):
    """The index of the largest element, of the flattened array or along one ``axis`` (torch.argmax).

    No gradient flows through an index. A 0-d array's one element is index 0;
    an empty group has no largest element (an error, as for ``max``).
    """
    if axis is not None and isinstance(axis, (tuple, list)):
        raise TypeError(f"argmax: axis must be an int or None, got {axis!r}")
    axes = normalize_axes(axis, array.ndim, "argmax")
    check_not_empty(array.shape, axes, axis, "argmax")
    with backend.on_device_of(array):
        # NumPy returns a scalar: the 0-d array a Tensor holds
        return get_array_module(array).asarray(array.argmax(axis=axes[0] if axis is not None and axes else None))
