"""Softmax, log-softmax and the losses built on them.

softmax(x)_i = e^{x_i} / sum_j e^{x_j}. Subtracting max(x) first changes
nothing mathematically (it cancels in the ratio) but keeps e^x from
overflowing, so logits of 1e4 are as fine as logits of 1.

The losses reduce their per-example terms as PyTorch does: ``"mean"``
(divide the sum by the number of terms), ``"sum"`` or ``"none"`` (keep them).
"""
import numpy as np

from ..autograd import Function
from ..backend import check_later, device_of, get_array_module, is_cupy_array, is_floating
from .matmul import check_same_float_dtype


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


REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()


def _grad_per_term(grad, reduction, count):
    """dL/d(each term): the upstream gradient, divided by the count for a mean."""
    return grad / count if reduction == "mean" else grad


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against class indices (N,) or probabilities (N, C).

    Per example, -log softmax(logits)[target] for an index, and
    -sum_c target_c log softmax(logits)_c for probabilities (Keras'
    ``categorical_crossentropy`` on one-hot labels, softmax included). The
    softmax is inside the loss, so the model's last layer gives raw logits.
    ``"mean"`` divides by N for both kinds of target, as PyTorch does.
    """

    def __init__(self, reduction="mean"):
        _check_reduction("cross_entropy", reduction)
        self.reduction = reduction

    def forward(self, logits, target):
        if logits.ndim != 2:
            raise ValueError(f"cross_entropy: expected logits of shape (N, C), got {logits.shape}")
        if not is_floating(logits.dtype):
            raise TypeError(f"cross_entropy: logits must be floating-point, got {logits.dtype}")
        xp = get_array_module(logits)
        log_probs = log_softmax_array(logits, axis=1)
        self.by_index = target.dtype != bool and np.issubdtype(target.dtype, np.integer)
        if self.by_index:
            target = _check_labels(logits, target)
            losses = -log_probs[xp.arange(len(target)), target]
        elif is_floating(target.dtype):
            if target.shape != logits.shape:
                hint = (" (class indices must be integers; or pass (N, C) class probabilities)"
                        if target.ndim == 1 else "")
                error = TypeError if target.ndim == 1 else ValueError
                raise error(f"cross_entropy: a {target.dtype} target must be class probabilities of the "
                            f"logits' shape {logits.shape}, got {target.shape}{hint}")
            check_same_float_dtype("cross_entropy", logits=logits, target=target)
            losses = -(target * log_probs).sum(axis=1)
        else:
            raise TypeError(f"cross_entropy: target must be integer class indices (N,) or float class "
                            f"probabilities (N, C), got dtype {target.dtype}")
        self.save_for_backward(log_probs, target)
        return _reduce(losses, self.reduction)

    def backward(self, grad):
        log_probs, target = self.saved
        xp = get_array_module(log_probs)
        # one upstream value per row: (N, 1) for "none", a (1, 1) that broadcasts otherwise
        grad = _grad_per_term(grad, self.reduction, len(log_probs)).reshape(-1, 1)
        softmax = xp.exp(log_probs)
        grad_target = None
        if self.by_index:
            # d(-log softmax_t)/dlogits = softmax - onehot(t)
            grad_logits = softmax
            grad_logits[xp.arange(len(target)), target] -= 1
            grad_logits *= grad
        else:
            # d(-sum_c t_c log softmax_c)/dlogits = softmax sum_c t_c - t
            grad_logits = (softmax * target.sum(axis=1, keepdims=True) - target) * grad
            if self.needs_input_grad[1]:
                # d(-sum_c t_c log softmax_c)/dt = -log softmax
                grad_target = -log_probs * grad
        return grad_logits, grad_target


def _check_labels(logits, target):
    """Integer labels: one per row of logits, each a class in [0, C); returns the labels to index with.

    On a GPU, reading the labels' range would make the host wait for the GPU at
    every step, so the check is made at the next copy to the host (the loss's
    ``.item()``), and meanwhile the labels are clipped into range so that no
    kernel reads outside the logits.
    """
    n, classes = logits.shape
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: integer class indices must have shape ({n},), one per row of "
                         f"logits {logits.shape}, got {target.shape}; pass one-hot labels as floats")
    if not n:
        return target
    if is_cupy_array(target):
        xp = get_array_module(target)
        check_later(((target < 0) | (target >= classes)).any(),
                    f"cross_entropy: class indices must be in [0, {classes}) for {classes} classes, got a "
                    f"label outside that range on {device_of(target)} (checked at the next copy to the host)")
        return xp.clip(target, 0, classes - 1)
    if target.min() < 0 or target.max() >= classes:
        raise ValueError(f"cross_entropy: class indices must be in [0, {classes}) for {classes} classes, "
                         f"got labels from {int(target.min())} to {int(target.max())}")
    return target


class MSELoss(Function):
    """Mean squared error: mean of (input - target)^2 over all elements (or sum, or none).

    The shapes must match exactly: PyTorch broadcasts (N, 1) against (N,)
    with only a warning, which silently computes an (N, N) loss.
    """

    def __init__(self, reduction="mean"):
        _check_reduction("mse_loss", reduction)
        self.reduction = reduction

    def forward(self, input, target):
        if input.shape != target.shape:
            raise ValueError(f"mse_loss: input and target must have the same shape, "
                             f"got {input.shape} and {target.shape}")
        check_same_float_dtype("mse_loss", input=input, target=target)
        difference = input - target
        self.save_for_backward(difference)
        return _reduce(difference * difference, self.reduction)

    def backward(self, grad):
        difference, = self.saved
        # d(input - target)^2/dinput = 2 (input - target); d/dtarget is its negative
        grad_input = 2 * difference * _grad_per_term(grad, self.reduction, difference.size)
        return grad_input, (-grad_input if self.needs_input_grad[1] else None)
