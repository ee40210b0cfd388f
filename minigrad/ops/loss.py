"""Softmax, log-softmax and the losses built on them.

softmax(x)_i = e^{x_i} / sum_j e^{x_j}. Subtracting max(x) first changes
nothing mathematically (it cancels in the ratio) but keeps e^x from
overflowing, so logits of 1e4 are as fine as logits of 1.
"""
from ..autograd import Function
from ..backend import get_array_module


def log_softmax_array(x, axis):
    """log softmax on a raw array, stable: (x - max) - log sum e^(x - max)."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _check_axis(op, x, axis):
    if not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor of shape {x.shape}")


class Softmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        _check_axis("softmax", x, self.axis)
        xp = get_array_module(x)
        y = xp.exp(log_softmax_array(x, self.axis))
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # dy_i/dx_j = y_i (delta_ij - y_j), so dL/dx_j = y_j (g_j - sum_i g_i y_i)
        y, = self.saved
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        _check_axis("log_softmax", x, self.axis)
        y = log_softmax_array(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # y_i = x_i - log sum e^x, dy_i/dx_j = delta_ij - softmax_j,
        # so dL/dx_j = g_j - softmax_j sum_i g_i
        y, = self.saved
        xp = get_array_module(y)
        return grad - xp.exp(y) * grad.sum(axis=self.axis, keepdims=True)
