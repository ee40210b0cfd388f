"""Fast BatchNorm and SyncBatchNorm: the forward and the first-order rule fused, channel by channel, in threads.

The textbook rule (``ops/norm.py``) writes each statistic and each term of
the gradient as its own array expression. Here the same formulas are
computed with three tunings, none of which changes what is computed:

- ``by_channel``: every channel is normalised with its own statistics, so
  runs of channels are shared out among threads (NumPy runs each line on one core);
- ``channel_sum``: per-channel sums by ``einsum``, which reads its operands
  once and multiplies as it sums, so sum(a b) needs no temporary the size of
  the batch, and is faster than ``sum`` over the non-adjacent axes (0, 2, 3);
- ``per_channel``: per-channel values repeated over the H W positions, a
  (1, C, H, W) array, rather than a (1, C, 1, 1) view: NumPy's loop over two
  arrays runs faster than one whose innermost operand repeats a single
  number (docs/performance.md), and the copy is only C H W values.

x_hat itself is never stored: y = (gamma inv_std) (x - mu) + beta, and the
backward gets x_hat from x - mu, which saves two passes over the batch.
"""
from .. import distributed as dist
from ..backend import get_array_module, is_cupy_array
from ..nn import sync_batchnorm
from ..ops import norm as textbook
from .cpu import PARALLEL_SIZE, run_on_slices


def by_channel(work, x):
    """Call ``work(part)`` on slices of the channels: all at once, or one run of channels per thread.

    The result does not depend on how the channels are split.
    """
    run_on_slices(work, x.shape[1], x, min_size=PARALLEL_SIZE)


def per_channel(values, x):
    """Per-channel values (C,) shaped to broadcast against x, (N, C) or (N, C, H, W).

    For images on the CPU each value is repeated over the H W positions (see
    the module docstring); on the GPU the broadcast costs nothing, so there it stays a view.
    """
    if x.ndim == 2:
        return values.reshape(1, -1)
    if is_cupy_array(values):
        return values.reshape(1, -1, 1, 1)
    xp = get_array_module(values)
    return xp.repeat(values, x.shape[2] * x.shape[3]).reshape(1, -1, *x.shape[2:])


def channel_sum(a, b=None):
    """Per-channel sum of a (or of a * b) over every axis but 1, for (N, C) or (N, C, H, W) arrays, by ``einsum``."""
    xp = get_array_module(a)
    n, c = a.shape[:2]
    a = a.reshape(n, c, -1)
    if b is None:
        return xp.einsum("ncp->c", a)
    return xp.einsum("ncp,ncp->c", a, b.reshape(n, c, -1))


class BatchNorm(textbook.BatchNorm):
    """Fast BatchNorm: the forward and the array rule in one pass per run of channels, in threads.

    First order only; ``create_graph`` runs the inherited textbook backward,
    which reads what this forward sets (``count``, ``mean``, the saved x, inv_std and gamma).
    """

    def forward(self, x, weight=None, bias=None):
        self._check_inputs(x, weight, bias)
        xp = get_array_module(x)
        count = self.values_per_channel(x)
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
            scale = 1 / xp.sqrt(var[part] + self.eps)  # y = (gamma inv_std) (x - mu) + beta
            if weight is not None:
                scale *= weight[part]
            xp.multiply(centered[:, part], per_channel(scale, x), out=out[:, part])
            if bias is not None:
                out[:, part] += per_channel(bias[part], x)
        by_channel(normalize, x)
        if self.training and self.running_mean is not None:
            self.update_running(mean, var, count)
        inv_std = 1 / xp.sqrt(var + self.eps)
        self.count, self.mean = count, mean
        self.save_for_backward(x, inv_std, weight, centered)  # the textbook layout, then x - mu
        return out

    def backward_arrays(self, grad):
        inv_std, weight, centered = self.saved[1:]  # x_hat = centered inv_std
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
                    # dL/dx = gamma inv_std / m (m g - sum g - x_hat sum(g x_hat)) (ops/norm.py), as
                    # dx above minus two per-channel terms, subtracted in place (one temporary)
                    x_hat_factor = scale[part] * inv_std[part] * sum_grad_x_hat[part] / self.count
                    dx -= centered[:, part] * per_channel(x_hat_factor, grad)
                    dx -= per_channel(scale[part] * sum_grad[part] / self.count, grad)
        by_channel(gradients, grad)
        return grad_x, (sum_grad_x_hat if needs_weight else None), (sum_grad if needs_bias else None)


class SyncBatchNormFunction(sync_batchnorm.SyncBatchNormFunction):
    """Fast SyncBatchNorm: einsum sums and one all-reduce of the two gradient sums in the array rule.

    First order only; ``create_graph`` runs the inherited textbook backward
    (BatchNorm's, its sums taken with ``AllReduceSum``).
    """

    def forward(self, x, weight=None, bias=None):
        self._check_inputs(x, weight, bias)
        xp = get_array_module(x)
        # this rank's mean and centred sum of squares, in two passes as BatchNorm computes them
        local_sum = channel_sum(x)
        local_mean = local_sum / max(x.size // x.shape[1], 1)  # a rank may hold no examples
        centered = x - per_channel(local_mean, x)
        local_m2 = channel_sum(centered, centered)
        count, mean, var = self.global_statistics(x, local_sum, local_mean, local_m2)
        centered -= per_channel((mean - local_mean).astype(x.dtype), x)  # x - mu, mu the global mean
        inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype)
        scale = inv_std if weight is None else inv_std * weight
        out = centered * per_channel(scale, x)
        if bias is not None:
            out += per_channel(bias, x)
        self.count = count.astype(x.dtype)
        self.save_for_backward(x, inv_std, weight, centered)  # as BatchNorm's drop-in
        return out

    def backward_arrays(self, grad):
        inv_std, weight, centered = self.saved[1:]  # x_hat = centered inv_std
        xp = get_array_module(grad)
        needs_x, needs_weight, needs_bias = (list(self.needs_input_grad) + [False, False])[:3]
        channels = grad.shape[1]
        # y = gamma x_hat + beta: this rank's parts of dL/dbeta = sum g and dL/dgamma = sum g x_hat
        sum_grad = channel_sum(grad)
        sum_grad_x_hat = channel_sum(grad, centered) * inv_std
        grad_x = None
        if needs_x:
            sums = dist._all_reduce_array(xp.concatenate([sum_grad, sum_grad_x_hat]), "sum")
            global_sum_grad, global_sum_grad_x_hat = sums[:channels], sums[channels:]
            scale = inv_std if weight is None else weight * inv_std
            # dL/dx = gamma inv_std / N (N g - sum g - x_hat sum(g x_hat)), the sums over every rank
            grad_x = grad * per_channel(scale, grad)
            grad_x -= centered * per_channel(scale * inv_std * global_sum_grad_x_hat / self.count, grad)
            grad_x -= per_channel(scale * global_sum_grad / self.count, grad)
        return grad_x, (sum_grad_x_hat if needs_weight else None), (sum_grad if needs_bias else None)


DROP_INS = {textbook.BatchNorm: BatchNorm, sync_batchnorm.SyncBatchNormFunction: SyncBatchNormFunction}
