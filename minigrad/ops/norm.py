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
computed again from x, so that it can be differentiated again (``create_graph``);
``backward_arrays`` computes it on raw arrays, channel by channel, for speed.
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import PARALLEL_SIZE, device_of, get_array_module, is_cupy_array, is_floating, run_on_slices
from .common import constant
from .matmul import check_same_float_dtype


def _check_channel_array(name, array, x):
    """A per-channel array (gamma, beta, a running buffer) must be (C,) and on x's device."""
    channels = x.shape[1]
    if array.shape != (channels,):
        raise ShapeError(f"batch_norm: {name} must have shape ({channels},), one value per channel "
                         f"of input {x.shape}, got {array.shape}")
    if device_of(array) != device_of(x):
        raise RuntimeError(f"batch_norm: {name} is on {device_of(array)} but the input is on {device_of(x)}; "
                           "move it with .to(device)")


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

    def forward(self, x, weight=None, bias=None):
        self._check_inputs(x, weight, bias)
        xp = get_array_module(x)
        count = x.size // x.shape[1]  # m, the values per channel
        if self.training and count < 2:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        channels = x.shape[1]
        centered, out = xp.empty_like(x), xp.empty_like(x)
        mean, var = xp.empty(channels, x.dtype), xp.empty(channels, x.dtype)
        if not self.training:
            mean[...], var[...] = self.running_mean, self.running_var

        def normalize(part):  # channels ``part``: every line below reads and writes only those
            if self.training:
                mean[part] = channel_sum(x[:, part]) / count
            xp.subtract(x[:, part], per_channel(mean[part], x), out=centered[:, part])
            if self.training:
                var[part] = channel_sum(centered[:, part], centered[:, part]) / count  # biased: divides by m
            # y = gamma x_hat + beta = (gamma inv_std) (x - mu) + beta: x_hat itself is never
            # stored (backward gets it from x - mu), which saves two passes over the batch
            scale = 1 / xp.sqrt(var[part] + self.eps)
            if weight is not None:
                scale *= weight[part]
            xp.multiply(centered[:, part], per_channel(scale, x), out=out[:, part])
            if bias is not None:
                out[:, part] += per_channel(bias[part], x)
        by_channel(normalize, x)
        if self.training and self.running_mean is not None:
            self.update_running(mean, var, count)
        inv_std = 1 / xp.sqrt(var + self.eps)
        self.count = count
        self.mean = mean  # (C,): at inference the running mean used, a constant of the textbook rule
        # x too: the textbook rule reads it, so a change in place must make backward raise
        self.save_for_backward(centered, inv_std, weight, x)
        return out

    def backward_arrays(self, grad):
        centered, inv_std, weight = self.saved[:3]  # x_hat = centered inv_std
        xp = get_array_module(grad)
        needs_x, needs_weight, needs_bias = (list(self.needs_input_grad) + [False, False])[:3]
        fused = needs_x and self.training  # the training rule for x needs both channel sums
        channels = grad.shape[1]
        scale = inv_std if weight is None else weight * inv_std  # dy/dx with mu and var constant (eval)
        sum_grad = xp.empty(channels, grad.dtype) if needs_bias or fused else None
        sum_grad_x_hat = xp.empty(channels, grad.dtype) if needs_weight or fused else None
        grad_x = xp.empty_like(grad) if needs_x else None

        def gradients(part):  # channels ``part`` only, as in forward
            g = grad[:, part]
            # y = gamma x_hat + beta: dy/dbeta = 1, dy/dgamma = x_hat, summed over each channel
            if sum_grad is not None:
                sum_grad[part] = channel_sum(g)
            if sum_grad_x_hat is not None:
                sum_grad_x_hat[part] = channel_sum(g, centered[:, part]) * inv_std[part]
            if needs_x:
                dx = grad_x[:, part]
                xp.multiply(g, per_channel(scale[part], grad), out=dx)
                if fused:
                    # dL/dx = gamma inv_std / m (m g - sum g - x_hat sum(g x_hat)), derived above, as
                    # dx above minus two per-channel terms, subtracted in place (one temporary)
                    x_hat_factor = scale[part] * inv_std[part] * sum_grad_x_hat[part] / self.count
                    dx -= centered[:, part] * per_channel(x_hat_factor, grad)
                    dx -= per_channel(scale[part] * sum_grad[part] / self.count, grad)
        by_channel(gradients, grad)
        return grad_x, (sum_grad_x_hat if needs_weight else None), (sum_grad if needs_bias else None)

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
        axes = (0,) if x.ndim == 2 else (0, 2, 3)  # every axis but the channels'
        per_channel = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)  # a (C,) tensor shaped to broadcast
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


def by_channel(work, x):
    """Call ``work(part)`` on slices of the channels: all at once, or one run of channels per thread.

    Every channel is normalised with its own statistics, so channels can be
    shared out among threads (NumPy runs each line on one core); the result
    does not depend on how they are split.
    """
    run_on_slices(work, x.shape[1], x, min_size=PARALLEL_SIZE)


def per_channel(values, x):
    """Per-channel values (C,) shaped to broadcast against x, (N, C) or (N, C, H, W).

    For images each channel's value is repeated over the H W positions, a
    (1, C, H, W) array, rather than reshaped to (1, C, 1, 1): NumPy's loop over
    two arrays runs about twice as fast as one whose innermost operand repeats a
    single number (measured: 0.31 against 0.63 ms to scale mnist_bn's first
    activation on one core), and the copy is only C H W values. On the GPU the
    broadcast costs nothing, so there it stays a view.
    """
    if x.ndim == 2:
        return values.reshape(1, -1)
    if is_cupy_array(values):
        return values.reshape(1, -1, 1, 1)
    xp = get_array_module(values)
    return xp.repeat(values, x.shape[2] * x.shape[3]).reshape(1, -1, *x.shape[2:])


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
