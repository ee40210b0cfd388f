"""SyncBatchNorm: batch normalisation with the statistics of the whole batch, over every rank.

In data-parallel training each rank sees B of the W B examples of a batch.
A plain BatchNorm normalises with its own rank's mean and variance, which
are noisier at small B than those of the whole batch, and then the model
trained is not the model one process would train on the whole batch.
SyncBatchNorm sums the per-channel statistics over the ranks first.

Forward, per channel, with m_r values on rank r and N = sum_r m_r:

    S = sum_r sum(x),  Q = sum_r sum(x^2),  N    (one all-reduce of 2 C + 1 numbers)
    mu = S / N,  var = Q / N - mu^2  (biased),  x_hat = (x - mu) / sqrt(var + eps),  y = gamma x_hat + beta

Each rank forms its sum(x^2) as M2 + m_r mean_r^2 from its own two-pass mean
and centred sum of squares M2, and the ranks combine them in float64, so
Q / N - mu^2 does not lose the variance to cancellation. The running
averages take mu and the unbiased N / (N - 1) var, exactly as BatchNorm does
with the whole batch, so they stay equal on every rank.

Backward. The loss of the global batch is L = sum_r L_r (each rank's loss;
DDP divides by W when it averages), and y_j depends on x_i through mu and
var for x_i on any rank. BatchNorm's rule (``ops/norm.py``) holds with m
replaced by N and its two sums taken over all ranks:

    dL/dx_j = gamma inv_std / N (N g_j - sum g - x_hat_j sum(g x_hat)),  g = dL/dy,

The gradients of gamma and beta are the rank's own sums, sum g x_hat and
sum g: DDP averages them as any other gradient.

The textbook rule is BatchNorm's own, with each sum over the batch an
``AllReduceSum`` node: a sum over every rank that is itself in the graph,
so the gradient can be differentiated again across ranks. The fast drop-in
(``fast/norm.py``) computes the first order on arrays and all-reduces its
two per-channel sums, sum g and sum g x_hat (2 C numbers), once.
"""
import numpy as np

from .. import backend
from .. import distributed as dist
from ..autograd import Function
from ..backend import get_array_module
from ..errors import ShapeError
from ..ops.common import constant
from ..ops.norm import BatchNorm, channel_axes
from . import functional as F
from .layers import _BatchNorm


class SyncBatchNormFunction(BatchNorm):
    """The training rule of SyncBatchNorm: BatchNorm's node with statistics summed over the ranks.

    The textbook ``backward`` is BatchNorm's, its sums over the batch taken
    with ``AllReduceSum``; the fast drop-in (``fast/norm.py``) all-reduces
    the two sums of its array rule once.
    """

    def __init__(self, running_mean=None, running_var=None, momentum=0.1, eps=1e-5):
        super().__init__(running_mean, running_var, training=True, momentum=momentum, eps=eps)

    def forward(self, x, weight=None, bias=None):
        self._check_inputs(x, weight, bias)
        xp = get_array_module(x)
        axes, per_channel = channel_axes(x)
        # this rank's sum, mean and centred sum of squares, in two passes as BatchNorm computes them
        local_sum = x.sum(axis=axes)
        local_mean = local_sum / max(x.size // x.shape[1], 1)  # a rank may hold no examples
        local_centered = x - local_mean.reshape(per_channel)
        local_m2 = (local_centered * local_centered).sum(axis=axes)
        count, mean, var = self.global_statistics(x, local_sum, local_mean, local_m2)
        inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype)
        out = (x - mean.astype(x.dtype).reshape(per_channel)) * inv_std.reshape(per_channel)  # x_hat
        if weight is not None:
            out = out * weight.reshape(per_channel)
        if bias is not None:
            out = out + bias.reshape(per_channel)
        self.count = count.astype(x.dtype)
        self.save_for_backward(x, inv_std, weight)  # as in BatchNorm: the rule reads x and gamma
        return out

    def global_statistics(self, x, local_sum, local_mean, local_m2):
        """N, mu and the biased var of the whole batch, from each rank's per-channel sum, mean and M2.

        One all-reduce of S, Q = M2 + m_r mean_r^2 (= sum(x^2)) and m_r, in
        float64; then mu = S / N and var = Q / N - mu^2. The running buffers
        are updated with these, as BatchNorm would with the whole batch.
        """
        xp = get_array_module(x)
        channels, wide = x.shape[1], np.float64
        local_sum_wide = local_sum.astype(wide)
        stats = xp.concatenate([local_sum_wide, local_m2.astype(wide) + local_sum_wide * local_mean,
                                xp.full(1, x.size // channels, wide)])
        dist._all_reduce_array(stats, "sum")
        count = stats[2 * channels]  # N, as a 0-d array: on a GPU it stays there
        mean = stats[:channels] / count
        var = xp.maximum(stats[channels:2 * channels] / count - mean * mean, 0)  # biased: divides by N
        backend.fail_if(count < 2, "sync_batch_norm: expected more than 1 value per channel over all ranks when "
                        "training", details=lambda: f"got {int(count)} (input of shape {x.shape} on this rank)")
        if self.running_mean is not None:
            self.update_running(mean, var, count)  # with the global mean, variance and count
        return count, mean, var

    # The textbook ``backward`` is BatchNorm's; only its sums over the batch and its count change.
    def batch_sum(self, tensor, axes):
        """Per-channel sums over the whole batch: this rank's sums, summed over the ranks in the graph."""
        return AllReduceSum.apply(tensor.sum(axis=axes, keepdims=True))

    def batch_count(self):
        """N, the values per channel over every rank, counted in forward."""
        return constant(self.count)


class AllReduceSum(Function):
    """S = sum_r a_r, the sum of a tensor over every rank of the process group, as a graph node.

    Every rank receives the same S and the loss of the whole batch is
    L = sum_r L_r, so dL/da_r = sum_r dL_r/dS: the gradient of an all-reduce
    is the all-reduce of the upstream gradients. Every rank must run its
    forward and backward the same number of times, in the same order, as
    for any collective. In a group of one it is the identity.
    """

    def forward(self, array):
        return dist._all_reduce_array(array.copy(), "sum")

    def backward_arrays(self, grad):
        return dist._all_reduce_array(grad.copy(), "sum")

    def backward(self, grad):
        """dL/da_r = sum over the ranks of the upstream gradient: an all-reduce again."""
        return AllReduceSum.apply(grad)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the whole batch, summed over every rank of the group.

    BatchNorm1d's and BatchNorm2d's arguments, parameters, buffers and
    state_dict keys; (N, C) or (N, C, H, W) input. In training, with a process
    group of more than one rank, each forward all-reduces the per-channel
    sums once and each backward once more (see the module docstring); every
    rank must call it the same number of times, in the same order. In eval
    mode, without a process group, or in a group of one, it is BatchNorm
    exactly. Keras: ``BatchNormalization(synchronized=True)`` under a
    distribution strategy; ``momentum`` is 1 - Keras' momentum, as for BatchNorm.
    """

    def forward(self, x):
        if x.ndim not in (2, 4):
            raise ShapeError(f"SyncBatchNorm: expected 2-D (N, C) or 4-D (N, C, H, W) input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ShapeError(f"SyncBatchNorm({self.num_features}): input has {x.shape[1]} channels "
                             f"(input shape {x.shape})")
        # momentum, counting and the choice of statistics as in BatchNorm
        running_mean, running_var, use_batch_stats, momentum = self.this_step()
        synchronised = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not synchronised:
            return F.batch_norm(x, running_mean, running_var, self.weight, self.bias,
                                training=use_batch_stats, momentum=momentum, eps=self.eps)
        return SyncBatchNormFunction.apply(
            x, self.weight, self.bias, running_mean=None if running_mean is None else running_mean.data,
            running_var=None if running_var is None else running_var.data, momentum=momentum, eps=self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """``module`` with every BatchNorm1d/2d in it replaced by a SyncBatchNorm holding the same tensors.

        The parameters and buffers are the BatchNorm's own tensors, not
        copies, so an optimizer built before the conversion still updates
        them. Returns the converted module (a new one if ``module`` itself is
        a BatchNorm). Call it before wrapping the model in DistributedDataParallel.
        """
        return _converted(cls, module, {})


def _converted(cls, module, done):
    if id(module) in done:  # a module reached twice (shared) is converted once
        return done[id(module)]
    result = module
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        result = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        for name in ("weight", "bias"):
            result._parameters[name] = module._parameters[name]
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            result._buffers[name] = module._buffers[name]
        result.train(module.training)
    done[id(module)] = result
    for name, child in list(module._modules.items()):
        if child is not None:
            result._modules[name] = _converted(cls, child, done)
    return result
