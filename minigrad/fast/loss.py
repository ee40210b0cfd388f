"""Fast first-order rules of softmax, log-softmax and the losses: the same formulas on raw arrays.

The textbook rules (``ops/loss.py``) compute softmax and log-softmax again
from the input tensors, so that they can be differentiated again. These use
what forward saved (the output, the log-probabilities, the difference) and
build no graph. The forwards are the textbook ones.
"""
from ..backend import get_array_module
from ..ops import loss as textbook


def grad_per_term(grad, reduction, count):
    """dL/d(each term): the upstream gradient, divided by the count (or the weights' sum) for a mean."""
    return textbook._divide(grad, count) if reduction == "mean" else grad


class Softmax(textbook.Softmax):
    """Softmax whose first-order rule reads its saved output. First order only."""

    def backward_arrays(self, grad):
        # dy_i/dx_j = y_i (delta_ij - y_j), so dL/dx_j = y_j (g_j - sum_i g_i y_i)
        y, = self.saved
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(textbook.LogSoftmax):
    """Log-softmax whose first-order rule reads its saved output. First order only."""

    def backward_arrays(self, grad):
        # y_i = x_i - log sum e^x, dy_i/dx_j = delta_ij - softmax_j,
        # so dL/dx_j = g_j - softmax_j sum_i g_i
        y, = self.saved
        xp = get_array_module(y)
        return grad - xp.exp(y) * grad.sum(axis=self.axis, keepdims=True)


class CrossEntropy(textbook.CrossEntropy):
    """Cross-entropy whose first-order rule uses the saved log-probabilities. First order only."""

    def backward_arrays(self, grad):
        xp = get_array_module(grad)
        # one upstream value per row: (N,) for "none", a 0-d value for "mean" and "sum"
        grad = grad_per_term(grad, self.reduction, self.denominator)
        grad_target = grad_weight = None
        if self.by_index:
            log_probs, labels, counted, row_weight, weight = self.saved[:5]
            softmax = xp.exp(log_probs)
            smoothing, classes = self.label_smoothing, log_probs.shape[1]
            upstream = xp.where(counted, grad, 0)  # an ignored row's term is the constant 0: no gradient
            # d(w_y (-log p_y))/dlogits_j = w_y (p_j - [j = y]), as d(-log p_c)/dlogits_j = p_j - [j = c]
            picked_scale = (1 - smoothing) * row_weight * upstream
            grad_logits = softmax * picked_scale[:, None]
            grad_logits[xp.arange(len(labels)), labels] -= picked_scale
            if smoothing:
                # d(sum_c w_c (-log p_c))/dlogits_j = p_j sum_c w_c - w_j
                spread_scale = (smoothing / classes * upstream)[:, None]
                grad_logits += spread_scale * (softmax * weight.sum() - weight)
        else:
            log_probs, smoothed, weight = self.saved[:3]
            grad = grad.reshape(-1, 1)
            # d(-sum_c w_c s_c log p_c)/dlogits_j = p_j sum_c w_c s_c - w_j s_j
            weighted = smoothed * weight
            grad_logits = (xp.exp(log_probs) * weighted.sum(axis=1, keepdims=True) - weighted) * grad
            if self.needs_input_grad[1]:
                # d/dt_c through s_c = (1 - e) t_c + e / C: -(1 - e) w_c log p_c
                grad_target = -(1 - self.label_smoothing) * weight * log_probs * grad
            if any(self.needs_input_grad[2:]):
                # d/dw_c: -sum_i s_ic log p_ic, each row scaled by its upstream value
                grad_weight = -(smoothed * log_probs * grad).sum(axis=0)
        return grad_logits, grad_target, grad_weight


class MSELoss(textbook.MSELoss):
    """Mean squared error whose first-order rule uses the saved difference. First order only."""

    def backward_arrays(self, grad):
        difference = self.saved[0]
        # d(input - target)^2/dinput = 2 (input - target); d/dtarget is its negative
        grad_input = 2 * difference * grad_per_term(grad, self.reduction, difference.size)
        return grad_input, (-grad_input if self.needs_input_grad[1] else None)


DROP_INS = {textbook.Softmax: Softmax, textbook.LogSoftmax: LogSoftmax,
            textbook.CrossEntropy: CrossEntropy, textbook.MSELoss: MSELoss}
