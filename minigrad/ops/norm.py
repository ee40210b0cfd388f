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

``BatchNorm.backward`` writes this formula with Tensor ops, the statistics
computed again from x, so that it can be differentiated again (``create_graph``).
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import device_of, get_array_module, is_floating
from .common import check_same_float_dtype, constant


def _check_channel_array(name, array, x):
    """A per-channel array (gamma, beta, a running buffer) must be (C,) and on x's device."""
    channels = x.shape[1]
    if array.shape != (channels,):
        raise ShapeError(f"batch_norm: {name} must have shape ({channels},), one value per channel "
                         f"of input {x.shape}, got {array.shape}")
    if device_of(array) != device_of(x):
        raise RuntimeError(f"batch_norm: {name} is on {device_of(array)} but the input is on {device_of(x)}; "
                           "move it with .to(device)")


def channel_axes(x):
    """The axes a per-channel statistic sums over, and the shape that makes a (C,) array broadcast against x.

    (0,) and (1, C) for (N, C) input; (0, 2, 3) and (1, C, 1, 1) for (N, C, H, W) input.
    """
    if x.ndim == 2:
        return (0,), (1, -1)
    return (0, 2, 3), (1, -1, 1, 1)


class BatchNorm(Function):
    """Batch normalisation of (N, C) or (N, C, H, W) input, per channel.

    ``running_mean`` and ``running_var`` are raw backend arrays of shape (C,)
    (or both None). In training they are updated in place, as PyTorch does:
    running = (1 - momentum) running + momentum batch_stat, using the
    unbiased batch variance for ``running_var``. ``weight`` (gamma) None means
    gamma = 1, ``bias`` (beta) None means beta = 0.
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

    def update_running(self, mean, var, count):
        """running = (1 - momentum) running + momentum batch_stat, in place, from m = ``count`` values per channel.

        The running variance estimates the population's, so it takes the unbiased m/(m-1) var.
        """
        momentum = self.momentum
        self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
        self.running_var[...] = (1 - momentum) * self.running_var + momentum * var * (count / (count - 1))

    def _check_inputs(self, x, weight, bias):
        if x.ndim not in (2, 4):
            raise ShapeError(f"batch_norm: expected input of shape (N, C) or (N, C, H, W), got {x.shape}")
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

    def values_per_channel(self, x):
        """m, the values per channel; training needs at least two (a variance of one value is 0)."""
        count = x.size // x.shape[1]
        if self.training and count < 2:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        return count

    def forward(self, x, weight=None, bias=None):
        self._check_inputs(x, weight, bias)
        xp = get_array_module(x)
        count = self.values_per_channel(x)
        axes, per_channel = channel_axes(x)
        if self.training:
            mean = x.mean(axis=axes)
            centered = x - mean.reshape(per_channel)
            var = (centered * centered).mean(axis=axes)  # biased: divides by m
            if self.running_mean is not None:
                self.update_running(mean, var, count)
        else:  # copies in x's dtype: a later training step changes the buffers in place
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
            centered = x - mean.reshape(per_channel)
        inv_std = 1 / xp.sqrt(var + self.eps)
        out = centered * inv_std.reshape(per_channel)  # x_hat
        if weight is not None:
            out = out * weight.reshape(per_channel)
        if bias is not None:
            out = out + bias.reshape(per_channel)
        self.count = count
        self.mean = mean  # (C,): at inference the running mean used, a constant of the textbook rule
        # x and gamma too: the rule reads them, so a change in place must make backward raise
        self.save_for_backward(x, inv_std, weight)
        return out

    def backward(self, grad):
        """The textbook rule, on tensors: the three-term formula of the module docstring.

        With g_hat = gamma g (g = dL/dy) and m values per channel,

            training:  dL/dx = inv_std / m (m g_hat - sum(g_hat) - x_hat sum(g_hat x_hat)),
            inference: dL/dx = g_hat inv_std  (mu and var are the running values: constants),
            dL/dgamma = sum(g x_hat),  dL/dbeta = sum(g),

        each sum per channel. In training mu, var, inv_std and x_hat are computed
        again from the input tensor, so a second derivative also flows through
        the batch statistics. ``batch_sum`` and ``batch_count`` name the sums over
        the batch and m, which SyncBatchNorm takes over every rank.
        """
        x, weight = (list(self.inputs) + [None])[:2]
        needs_x, needs_weight, needs_bias = (list(self.needs_input_grad) + [False, False])[:3]
        axes, per_channel = channel_axes(x)
        if self.training:
            count = self.batch_count()
            mean = self.batch_sum(x, axes) / count
            centered = x - mean
            inv_std = 1 / (self.batch_sum(centered * centered, axes) / count + self.eps).sqrt()
        else:
            centered = x - constant(self.mean.reshape(per_channel))
            inv_std = constant(self.saved[1].reshape(per_channel))
        x_hat = centered * inv_std
        g_hat = grad if weight is None else grad * weight.reshape(per_channel)
        grad_x = grad_weight = grad_bias = None
        if needs_x and self.training:
            grad_x = inv_std / count * (count * g_hat - self.batch_sum(g_hat, axes)
                                        - x_hat * self.batch_sum(g_hat * x_hat, axes))
        elif needs_x:
            grad_x = g_hat * inv_std
        if needs_weight:
            grad_weight = (grad * x_hat).sum(axis=axes)
        if needs_bias:
            grad_bias = grad.sum(axis=axes)
        return grad_x, grad_weight, grad_bias

    def batch_sum(self, tensor, axes):
        """Per-channel sums over the batch (kept as (1, C) or (1, C, 1, 1)), for the textbook rule."""
        return tensor.sum(axis=axes, keepdims=True)

    def batch_count(self):
        """m, the values per channel in the batch, for the textbook rule."""
        return self.count
