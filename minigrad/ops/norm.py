"""Batch normalisation: normalise each channel over the batch, then scale and shift.

For a channel with values x_1..x_m (m = N for (N, C) input, N H W for
(N, C, H, W) input):

    mu = mean(x),  var = mean((x - mu)^2)  (biased),  inv_std = 1 / sqrt(var + eps),
    x_hat = (x - mu) inv_std,  y = gamma x_hat + beta.

In training mu and var are the batch's own; at inference the running
averages gathered during training take their place, so one example's output
no longer depends on the rest of its batch.

The training backward is one fused rule (Chainer's), not ten small nodes.
With g = dL/dx_hat = gamma dL/dy, and because mu and var depend on every x_j,

    dx_hat_i/dx_j = inv_std (delta_ij - 1/m - x_hat_i x_hat_j / m),

so dL/dx_j = inv_std (g_j - mean(g) - x_hat_j mean(g x_hat)). The two
correction terms are the gradient's parts that mu and var take away:
shifting every x by the same amount changes nothing (mu absorbs it), so the
gradient must sum to zero; scaling x - mu changes nothing either (var,
eps aside, absorbs it), so the gradient must be orthogonal to x_hat. With 1/m taken out,

    dL/dx = gamma inv_std / m (m dL/dy - sum(dL/dy) - x_hat sum(dL/dy x_hat)).
"""
from ..autograd import Function
from ..backend import get_array_module, is_cupy_array, is_floating
from .matmul import check_same_float_dtype


def _check_channel_array(name, array, x):
    """A per-channel array (gamma, beta, a running buffer) must be (C,) and on x's device."""
    channels = x.shape[1]
    if array.shape != (channels,):
        raise ValueError(f"batch_norm: {name} must have shape ({channels},), one value per channel "
                         f"of input {x.shape}, got {array.shape}")
    if is_cupy_array(array) != is_cupy_array(x):
        raise RuntimeError(f"batch_norm: {name} and the input must be on one device; move it with .to(device)")


class BatchNorm(Function):
    """Batch normalisation of (N, C) or (N, C, H, W) input, per channel.

    ``running_mean`` and ``running_var`` are raw backend arrays of shape (C,)
    (or both None). In training they are updated in place, as PyTorch does:
    running = (1 - momentum) running + momentum batch_stat, using the
    unbiased batch variance for ``running_var``. ``weight`` (gamma) None means
    gamma = 1, ``bias`` (beta) None means beta = 0; TF contrib ``batch_norm``
    with its default ``scale=False`` keeps only beta.

    TF/Keras spell the averaging ``decay`` (or ``momentum`` in Keras): it is
    minigrad's 1 - momentum, so TF's decay 0.9 is momentum 0.1 and Keras'
    0.99 is 0.01. TF and Keras default to eps 1e-3, PyTorch and minigrad to 1e-5.
    """

    def __init__(self, running_mean=None, running_var=None, training=False, momentum=0.1, eps=1e-5):
        if not 0 <= momentum <= 1:
            raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum!r} "
                             "(TF/Keras decay d is momentum 1 - d)")
        if not eps >= 0:
            raise ValueError(f"batch_norm: eps must not be negative, got {eps!r}")
        if (running_mean is None) != (running_var is None):
            raise ValueError("batch_norm: give both running_mean and running_var, or neither")
        if not training and running_mean is None:
            raise ValueError("batch_norm: training=False normalises with the running statistics, "
                             "so running_mean and running_var are required")
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def _check_inputs(self, x, weight, bias):
        if x.ndim not in (2, 4):
            raise ValueError(f"batch_norm: expected input of shape (N, C) or (N, C, H, W), got {x.shape}")
        learned = {name: array for name, array in (("weight", weight), ("bias", bias)) if array is not None}
        check_same_float_dtype("batch_norm", input=x, **learned)
        buffers = {}
        if self.running_mean is not None:
            buffers = {"running_mean": self.running_mean, "running_var": self.running_var}
        for name, array in {**learned, **buffers}.items():
            _check_channel_array(name, array, x)
        for name, array in buffers.items():
            if not is_floating(array.dtype):
                raise TypeError(f"batch_norm: {name} must be floating-point, got {array.dtype}")

    def forward(self, x, weight=None, bias=None):
        self._check_inputs(x, weight, bias)
        xp = get_array_module(x)
        per_channel = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)  # broadcasts a (C,) array against x
        count = x.size // x.shape[1]  # m, the values per channel
        if self.training:
            if count < 2:
                raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                                 f"got input of shape {x.shape}")
            mean = channel_sum(x) / count
            centered = x - mean.reshape(per_channel)
            var = channel_sum(centered, centered) / count  # biased: divides by m, as in the formula
            if self.running_mean is not None:
                # the running variance estimates the population's, so it takes the unbiased m/(m-1) var
                momentum = self.momentum
                self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
                self.running_var[...] = (1 - momentum) * self.running_var + momentum * var * (count / (count - 1))
        else:
            mean = self.running_mean.astype(x.dtype, copy=False)
            var = self.running_var.astype(x.dtype, copy=False)
            centered = x - mean.reshape(per_channel)
        inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        x_hat = centered
        x_hat *= inv_std.reshape(per_channel)  # in place: centered is not needed any more
        # y = gamma x_hat + beta in one new array, updated in place
        out = x_hat.copy() if weight is None else x_hat * weight.reshape(per_channel)
        if bias is not None:
            out += bias.reshape(per_channel)
        self.per_channel, self.count = per_channel, count
        self.save_for_backward(x_hat, inv_std, weight)
        return out

    def backward(self, grad):
        x_hat, inv_std, weight = self.saved
        needs_x, needs_weight, needs_bias = (list(self.needs_input_grad) + [False, False])[:3]
        grad_x = grad_weight = grad_bias = None
        fused = needs_x and self.training  # the training rule for x needs both channel sums
        # y = gamma x_hat + beta: dy/dbeta = 1, dy/dgamma = x_hat, summed over each channel
        sum_grad = channel_sum(grad) if needs_bias or fused else None
        sum_grad_x_hat = channel_sum(grad, x_hat) if needs_weight or fused else None
        if needs_bias:
            grad_bias = sum_grad
        if needs_weight:
            grad_weight = sum_grad_x_hat
        if needs_x:
            scale = inv_std if weight is None else weight * inv_std
            grad_x = grad * scale.reshape(self.per_channel)  # mu and var constant (eval): dy/dx = gamma inv_std
            if fused:
                # dL/dx = gamma inv_std / m (m g - sum g - x_hat sum(g x_hat)), derived above, as
                # grad_x above minus two per-channel terms, subtracted in place (no m-sized temporaries but one)
                grad_x -= x_hat * (scale * sum_grad_x_hat / self.count).reshape(self.per_channel)
                grad_x -= (scale * sum_grad / self.count).reshape(self.per_channel)
        return grad_x, grad_weight, grad_bias


def channel_sum(a, b=None):
    """Per-channel sum of a (or of a * b) over every axis but 1, for (N, C) or (N, C, H, W) arrays.

    ``einsum`` reads the operands once and multiplies as it sums, so sum(a * b)
    costs no temporary the size of the batch, and is about twice as fast as
    NumPy's ``sum`` over the non-adjacent axes (0, 2, 3).
    """
    xp = get_array_module(a)
    n, c = a.shape[:2]
    a = a.reshape(n, c, -1)
    if b is None:
        return xp.einsum("ncp->c", a)
    return xp.einsum("ncp,ncp->c", a, b.reshape(n, c, -1))
