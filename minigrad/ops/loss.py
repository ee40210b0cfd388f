"""Softmax, log-softmax and the losses built on them.

softmax(x)_i = e^{x_i} / sum_j e^{x_j}. Subtracting max(x) first changes
nothing mathematically (it cancels in the ratio) but keeps e^x from
overflowing, so logits of 1e4 are as fine as logits of 1.

The losses reduce their per-example terms as PyTorch does: ``"mean"``
(divide the sum by the number of terms; for cross-entropy with class
weights, by the sum of the weights of the targets), ``"sum"`` or ``"none"``
(keep them).
"""
import numbers

import numpy as np

from ..errors import ShapeError
from ..autograd import Function
from ..backend import fail_if, get_array_module, is_floating
from .common import check_same_float_dtype, constant, keep


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
        """dL/dx = y (g - sum(g y)) along the axis, with y the output tensor.

        With y_i = e^{x_i} / sum_k e^{x_k}, dy_i/dx_j = y_i (delta_ij - y_j), so
        dL/dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i).
        y is this node's own output, so differentiating again goes through this rule once more.
        """
        y = self.output()
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
        """dL/dx = g - softmax(x) sum(g) along the axis, softmax(x) = e^y with y the output tensor.

        y_i = x_i - log sum_k e^{x_k}, so dy_i/dx_j = delta_ij - softmax_j and
        dL/dx_j = sum_i g_i (delta_ij - softmax_j) = g_j - softmax_j sum_i g_i.
        """
        y = self.output()
        return grad - y.exp() * grad.sum(axis=self.axis, keepdims=True)


REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()


def _divide(numerator, denominator):
    """numerator / denominator with IEEE's answers and no NumPy warning: 0/0 is NaN, as in PyTorch.

    A mean over no terms (every target ignored, an empty batch) divides by zero;
    PyTorch returns NaN for it without a word, and so does this.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def _tensor_grad_per_term(grad, reduction, count):
    """dL/d(each term) for a textbook rule: ``grad`` (a Tensor), divided by ``count`` (an int) for a mean.

    A mean over no terms has no input elements to send a gradient to, so
    ``count`` 0 leaves ``grad`` as it is rather than dividing by zero.
    """
    return grad / count if reduction == "mean" and count else grad


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against class indices (N,) or probabilities (N, C).

    With p = softmax(logits), class weights w (all ones when none are given)
    and label smoothing e, each example's term is, as in PyTorch:

    - class index y:  (1 - e) w_y (-log p_y) + (e / C) sum_c w_c (-log p_c),
      and 0 where y == ignore_index; ``"mean"`` divides the sum of the terms
      by the sum of w_y over the rows not ignored (NaN if there are none);
    - probabilities t:  -sum_c w_c s_c log p_c with s = (1 - e) t + e / C;
      ``"mean"`` divides by N. ``ignore_index`` has no meaning here and must
      stay negative (PyTorch refuses one that could name a class).

    The softmax is inside the loss, so the model's last layer gives raw logits.
    """

    def __init__(self, reduction="mean", ignore_index=-100, label_smoothing=0.0):
        _check_reduction("cross_entropy", reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"cross_entropy: ignore_index must be an int, got {ignore_index!r} "
                            f"({type(ignore_index).__name__})")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
            raise TypeError(f"cross_entropy: label_smoothing must be a number in [0, 1], got {label_smoothing!r} "
                            f"({type(label_smoothing).__name__})")
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.reduction = reduction
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits, target, weight=None):
        if logits.ndim != 2:
            raise ShapeError(f"cross_entropy: expected logits of shape (N, C), got {logits.shape}")
        if not is_floating(logits.dtype):
            raise TypeError(f"cross_entropy: logits must be floating-point, got {logits.dtype}")
        xp = get_array_module(logits)
        n, classes = logits.shape
        if weight is None:
            weight = xp.ones(classes, dtype=logits.dtype)  # no weights: every class counts once
        else:
            _check_weight(logits, weight)
        log_probs = log_softmax_array(logits, axis=1)
        self.by_index = target.dtype != bool and np.issubdtype(target.dtype, np.integer)
        if self.by_index:
            if any(self.needs_input_grad[2:]):
                raise RuntimeError("cross_entropy: with class-index targets the loss has no gradient for "
                                   "weight (nor in PyTorch); pass weight.detach()")
            return self._index_loss(logits, log_probs, target, weight)
        elif is_floating(target.dtype):
            if target.shape != logits.shape:
                hint = (" (class indices must be integers; or pass (N, C) class probabilities)"
                        if target.ndim == 1 else "")
                error = TypeError if target.ndim == 1 else ValueError
                raise error(f"cross_entropy: a {target.dtype} target must be class probabilities of the "
                            f"logits' shape {logits.shape}, got {target.shape}{hint}")
            check_same_float_dtype("cross_entropy", logits=logits, target=target)
            if self.ignore_index >= 0:
                raise ValueError(f"cross_entropy: ignore_index is for class-index targets only, got "
                                 f"ignore_index={self.ignore_index} with class probabilities {target.shape}; "
                                 "leave it negative (the default is -100)")
            smoothed = target
            if self.label_smoothing:
                smoothed = (1 - self.label_smoothing) * target + self.label_smoothing / classes
            losses = -(smoothed * weight * log_probs).sum(axis=1)
            self.denominator = n
            # logits and target too: the textbook rule reads them, so a change in place must raise
            self.save_for_backward(log_probs, smoothed, weight, logits, target)
        else:
            raise TypeError(f"cross_entropy: target must be integer class indices (N,) or float class "
                            f"probabilities (N, C), got dtype {target.dtype}")
        return self._reduce_terms(losses)

    def _reduce_terms(self, terms):
        """Per-row terms reduced: a "mean" divides by ``self.denominator`` (0/0 is NaN, as in PyTorch)."""
        if self.reduction == "mean":
            return _divide(terms.sum(), self.denominator)
        return _reduce(terms, self.reduction)

    def _index_loss(self, logits, log_probs, target, weight):
        """The loss for class-index targets: PyTorch's two parts, each reduced over the rows that count."""
        xp = get_array_module(logits)
        labels, counted = _check_labels(logits, target, self.ignore_index)
        smoothing, classes = self.label_smoothing, logits.shape[1]
        row_weight = weight[labels] * counted  # w_y, 0 on an ignored row
        self.denominator = row_weight.sum()
        self.save_for_backward(log_probs, labels, counted, row_weight, weight, logits)
        # w_y (-log p_y); an ignored row's term is 0 whatever its logits
        picked = xp.where(counted, -row_weight * log_probs[xp.arange(len(labels)), labels], 0)
        loss = (1 - smoothing) * self._reduce_terms(picked)
        if smoothing:
            # sum_c w_c (-log p_c): the same weights spread over every class
            spread = xp.where(counted, -(weight * log_probs).sum(axis=1), 0)
            loss = loss + smoothing / classes * self._reduce_terms(spread)
        return loss

    def backward(self, grad):
        """The textbook rule: softmax minus the (smoothed, weighted) target, on the logits tensor.

        Both kinds of target give each row the term -sum_c r_c log p_c with
        p = softmax(logits), s the smoothed target ((1 - e) t + e / C, t the
        one-hot of the label for class indices) and r_c = w_c s_c. As
        d(-log p_c)/dlogits_j = p_j - [j = c],

            d term / dlogits_j = p_j sum_c r_c - r_j,

        and the reduction scales row i by dL/d(term_i): the upstream value,
        divided by the denominator for a "mean", and 0 on an ignored row.
        For probability targets t and w are tensors too:
        d term/dt_c = -(1 - e) w_c log p_c and d term/dw_c = -s_c log p_c.
        p and log p are computed again from the logits with Tensor ops, so this
        gradient can itself be differentiated.
        """
        logits, target, weight = (list(self.inputs) + [None])[:3]
        n, classes = logits.shape
        smoothing = self.label_smoothing
        if self.by_index:
            # dL/d(term_i), a constant factor per row: 0 where the row is ignored, 1/denominator for a mean
            log_probs, labels, counted = self.saved[:3]
            row_factor = counted.astype(log_probs.dtype)
            if self.reduction == "mean":
                row_factor = _divide(row_factor, self.denominator)
            # an ignored row gets exactly 0, selected, even from a NaN upstream value or 0/0 (as PyTorch)
            per_row = keep(grad * constant(row_factor), counted).reshape(n, 1)
            smoothed = constant(_smoothed_one_hot(labels, classes, smoothing, log_probs.dtype))
        else:
            per_row = _tensor_grad_per_term(grad, self.reduction, n)
            per_row = per_row.reshape(n, 1) if self.reduction == "none" else per_row
            smoothed = target if not smoothing else (1 - smoothing) * target + smoothing / classes
        weighted = smoothed if weight is None else smoothed * weight
        probs = logits.softmax(axis=1)
        grad_logits = (probs * weighted.sum(axis=1, keepdims=True) - weighted) * per_row
        grad_target = grad_weight = None
        if not self.by_index and (self.needs_input_grad[1] or any(self.needs_input_grad[2:])):
            log_probs = logits.log_softmax(axis=1)
            if self.needs_input_grad[1]:
                grad_target = -(1 - smoothing) * log_probs * per_row
                grad_target = grad_target if weight is None else grad_target * weight
            if any(self.needs_input_grad[2:]):
                grad_weight = -(smoothed * log_probs * per_row).sum(axis=0)
        return grad_logits, grad_target, grad_weight


def _smoothed_one_hot(labels, classes, smoothing, dtype):
    """(1 - e) one_hot(labels) + e / C as an (N, C) array: the index target as class probabilities."""
    xp = get_array_module(labels)
    smoothed = xp.full((len(labels), classes), smoothing / classes, dtype=dtype)
    smoothed[xp.arange(len(labels)), labels] += 1 - smoothing
    return smoothed


def _check_weight(logits, weight):
    """Class weights: one floating-point value per class, of the logits' dtype."""
    classes = logits.shape[1]
    if not is_floating(weight.dtype):
        raise TypeError(f"cross_entropy: weight must be floating-point, got {weight.dtype}")
    check_same_float_dtype("cross_entropy", logits=logits, weight=weight)
    if weight.shape != (classes,):
        raise ShapeError(f"cross_entropy: weight must have shape ({classes},), one value per class of logits "
                         f"{logits.shape}, got {weight.shape}")


def _check_labels(logits, target, ignore_index):
    """Integer labels: one per row of logits, each a class in [0, C) or ``ignore_index``.

    Returns the labels to index the logits with, where an ignored row's label
    (and, on a GPU, a bad one) is replaced by class 0, and the mask of the rows
    that count. On a GPU, reading the labels' range would make the host wait
    for the GPU at every step, so the check is made at the next copy to the
    host (the loss's ``.item()``); meanwhile no kernel reads outside the logits.
    """
    n, classes = logits.shape
    if target.shape != (n,):
        raise ShapeError(f"cross_entropy: integer class indices must have shape ({n},), one per row of "
                         f"logits {logits.shape}, got {target.shape}; pass one-hot labels as floats")
    xp = get_array_module(target)
    target = target.astype(np.int64, copy=False)  # uint8 labels compare with a negative ignore_index too
    counted = target != ignore_index
    outside = counted & ((target < 0) | (target >= classes))
    message = (f"cross_entropy: class indices must be in [0, {classes}) for {classes} classes "
               f"(or be ignore_index={ignore_index})")
    fail_if(outside, message,
            details=lambda: f"got labels from {int(target[counted].min())} to {int(target[counted].max())}")
    return xp.where(counted & ~outside, target, 0), counted


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
            raise ShapeError(f"mse_loss: input and target must have the same shape, "
                             f"got {input.shape} and {target.shape}")
        check_same_float_dtype("mse_loss", input=input, target=target)
        difference = input - target
        self.save_for_backward(difference, input, target)  # the inputs for the textbook rule (in-place checks)
        return _reduce(difference * difference, self.reduction)

    def backward(self, grad):
        """d(input - target)^2/dinput = 2 (input - target), times dL/d(each term) (g / size for a mean).

        The target's gradient is its negative. The difference is formed again
        from the input tensors, so the rule can be differentiated (d^2/dinput^2 = 2 g / size).
        """
        input, target = self.inputs
        difference = input - target
        grad_input = 2 * difference * _tensor_grad_per_term(grad, self.reduction, difference.numel())
        return grad_input, (-grad_input if self.needs_input_grad[1] else None)
