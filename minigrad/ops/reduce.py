"""Reductions: sum, mean, var, max over some axes (or all).

Each output element depends on a group of input elements; backward spreads
the output's gradient back over its group. ``expand`` puts the reduced axes
back (as size 1) so that the gradient broadcasts against the input.
"""
from ..autograd import Function
from ..backend import get_array_module


def normalize_axes(axis, ndim, op):
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    result = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        result.append(a % ndim if ndim else 0)
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: axis {axis} names the same axis twice")
    return tuple(sorted(result))


def expand(grad, in_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input of shape ``in_shape``."""
    if keepdims:
        return grad
    shape = tuple(1 if i in axes else size for i, size in enumerate(in_shape))
    return grad.reshape(shape)


class _Reduction(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def _setup(self, x):
        self.axes = normalize_axes(self.axis, x.ndim, self.name.lower())
        self.in_shape = x.shape
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]


class Sum(_Reduction):
    def forward(self, x):
        self._setup(x)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        # every input element contributes with slope 1 to its group's sum
        xp = get_array_module(grad)
        return xp.broadcast_to(expand(grad, self.in_shape, self.axes, self.keepdims), self.in_shape)


class Mean(_Reduction):
    def forward(self, x):
        self._setup(x)
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        # mean = sum / n, so each element gets grad / n
        xp = get_array_module(grad)
        grad = expand(grad, self.in_shape, self.axes, self.keepdims) / self.count
        return xp.broadcast_to(grad, self.in_shape)


class Var(_Reduction):
    """Variance over ``axis``: biased (divide by n) unless ``unbiased`` (divide by n - 1)."""

    def __init__(self, axis=None, keepdims=False, unbiased=False):
        super().__init__(axis, keepdims)
        self.unbiased = unbiased

    def forward(self, x):
        self._setup(x)
        centered = x - x.mean(axis=self.axes, keepdims=True)
        self.save_for_backward(centered)
        self.divisor = self.count - 1 if self.unbiased else self.count
        return (centered * centered).sum(axis=self.axes, keepdims=self.keepdims) / self.divisor

    def backward(self, grad):
        # var = sum (x_i - mean)^2 / d; d var/d x_i = 2 (x_i - mean) / d
        # (the mean's own dependence on x_i drops out: sum (x_j - mean) = 0)
        centered, = self.saved
        return expand(grad, self.in_shape, self.axes, self.keepdims) * (2 / self.divisor) * centered


class Max(_Reduction):
    """Maximum over ``axis``; ties share the gradient equally (as torch.amax)."""

    def forward(self, x):
        self._setup(x)
        if x.size == 0:
            raise ValueError(f"max: cannot take the maximum of an empty tensor of shape {x.shape}")
        out = x.max(axis=self.axes, keepdims=True)
        self.save_for_backward(x, out)
        return out if self.keepdims else out.reshape(
            tuple(s for i, s in enumerate(x.shape) if i not in self.axes))

    def backward(self, grad):
        # slope 1 for the largest element of each group, 0 for the others
        x, out = self.saved
        winners = x == out
        share = winners / winners.sum(axis=self.axes, keepdims=True)
        return expand(grad, self.in_shape, self.axes, self.keepdims) * share.astype(x.dtype, copy=False)
