"""DistributedDataParallel: the same model on every rank, its gradients averaged over the ranks in backward.

Data parallelism splits each batch among the ranks: with W ranks and a
per-rank batch of B examples, rank r computes the loss L_r, the mean over
its B examples. The loss of the whole batch of W B examples is the mean of
the ranks' losses, L = (1/W) sum_r L_r, so its gradient is the mean of the
ranks' gradients: dL/dw = (1/W) sum_r dL_r/dw. Averaging the gradients
over the ranks after backward therefore gives every rank the gradient of the
global batch, and, as the replicas start equal (rank 0's weights are
broadcast when the model is wrapped), the same optimizer step keeps them
equal. BatchNorm is the exception: a rank's statistics come from its own
B examples; ``SyncBatchNorm`` computes them over all W B.

How the averaging joins backward, without a hook in the engine. For the
length of ``forward``, each module holds, in place of each parameter, a
*view* of it: a tensor with the parameter's values made by a small graph
node (``_BucketEntry``) from a 0-d token; the token is made from all the
parameters of one *bucket* by another node (``_Bucket``). The model
computes with the views, so backward reaches each view's node with that
parameter's whole gradient (the sum over all its uses), which the node hands
to its bucket. The token's node runs only after every view made from it has
run, that is, when the bucket's gradients are all ready; it then averages
them in one all-reduce and returns them to the parameters, where the engine
accumulates them into ``.grad`` as for any leaf. So the averaging starts
during backward, bucket by bucket, as PyTorch's DDP does, and the training
loop is PyTorch's: ``loss.backward(); optimizer.step()``. PyTorch overlaps
a bucket's all-reduce with the rest of backward; here each one is blocking.

Buckets hold parameters in reverse order of registration (roughly the order
in which backward finishes them), up to ``bucket_cap_mb`` MiB each, one dtype
and device per bucket: fewer, larger messages than one per parameter.

Every rank must run the same graph: the collectives in backward are matched
by order, so a parameter used on one rank must be used on all. Gradients of
uses outside ``forward`` (a penalty on the weights added to the loss) reach
``.grad`` directly and are not averaged.
"""
import contextlib

from .. import distributed as dist
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module, on_device_of
from ..ops.common import constant
from .module import Module
from .sync_batchnorm import AllReduceSum


class _Bucket(Function):
    """The parameters of one bucket in, a 0-d token out; backward: their gradients, averaged over the ranks.

    Each ``_BucketEntry`` made from the token leaves its parameter's gradient
    in ``self.grads``; the engine runs this backward after all of them.
    """

    def forward(self, *params):
        self.params = params
        self.grads = [None] * len(params)
        return get_array_module(params[0]).zeros((), params[0].dtype)

    def backward(self, token_grad):
        """The textbook rule: view_i = param_i, so dL/dparam_i = dL/dview_i, averaged over the ranks.

        Written with Tensor ops (one differentiable all-reduce per parameter),
        so that ``create_graph`` works through DDP: the mean over the ranks is
        linear, and its own gradient is the same mean again.
        """
        world = dist.get_world_size()
        grads = [AllReduceSum.apply(constant(get_array_module(param).zeros_like(param)) if grad is None else grad)
                 / world for param, grad in zip(self.params, self.grads)]  # an unused parameter adds 0
        self.grads = [None] * len(self.params)
        return tuple(grads)

    def backward_arrays(self, token_grad):
        # the same average on raw arrays, in one message for the whole bucket
        xp = get_array_module(token_grad)
        flat = xp.concatenate([xp.zeros(param.size, param.dtype) if grad is None else grad.reshape(-1)
                               for param, grad in zip(self.params, self.grads)])  # an unused parameter adds 0
        dist._all_reduce_array(flat, "avg")
        self.grads = [None] * len(self.params)  # ready for another backward (retain_graph=True)
        grads, start = [], 0
        for param in self.params:
            grads.append(flat[start:start + param.size].reshape(param.shape))
            start += param.size
        return tuple(grads)


class _BucketEntry(Function):
    """One parameter of a bucket, read from the bucket's token: its values forward, its gradient to the bucket."""

    def __init__(self, bucket, index):
        self.bucket, self.index = bucket, index

    def forward(self, token):
        return self.bucket.params[self.index]

    def backward(self, grad):
        """Hand the parameter's whole gradient to the bucket (which averages it); nothing flows to the token."""
        self.bucket.grads[self.index] = grad
        return constant(get_array_module(grad.data).zeros((), grad.dtype))

    def backward_arrays(self, grad):
        self.bucket.grads[self.index] = grad  # the bucket averages it and hands it to the parameter
        return get_array_module(grad).zeros((), grad.dtype)  # nothing flows to the token itself


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training: rank 0's weights everywhere, gradients averaged over ranks.

    On construction, rank 0's parameters and buffers are broadcast to every
    rank (after checking that every rank has the same names, shapes and
    dtypes). ``forward`` calls the module; the backward that follows averages
    every parameter's gradient over the ranks, bucket by bucket, as the
    module docstring explains. With ``broadcast_buffers`` (PyTorch's default)
    each training-mode forward first copies rank 0's buffers (BatchNorm's
    running statistics) to every rank. ``device_ids`` (PyTorch's
    ``[local_rank]``) is only checked: the module must already be there.

    The wrapped model is ``ddp.module``; ``state_dict`` keys start with
    ``module.``, as PyTorch's do (save ``ddp.module.state_dict()`` to load the
    weights into an unwrapped model). Forward in eval mode or under
    ``no_grad`` calls no collective, so rank 0 alone may evaluate. There is
    no ``no_sync``: every backward averages.
    """

    def __init__(self, module, device_ids=None, broadcast_buffers=True, bucket_cap_mb=25):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module to wrap, got {type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: call minigrad.distributed.init_process_group() first "
                               "(on every rank; under plain python it makes a group of one)")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = bucket_cap_mb
        _check_device_ids(module, device_ids)
        _check_same_model_on_every_rank(module)
        _broadcast_from_rank_0([tensor for _, tensor in module._state_tensors()])

    def forward(self, *inputs, **options):
        if self.broadcast_buffers and self.training:
            _broadcast_from_rank_0(list(self.module.buffers()))
        if not is_grad_enabled():
            return self.module(*inputs, **options)
        with _parameters_replaced(self.module, self._parameter_views()):
            return self.module(*inputs, **options)

    def _buckets(self):
        """The trainable parameters, last registered first, cut into buckets of one dtype and device each."""
        cap = self.bucket_cap_mb * 2 ** 20
        buckets, size = [], 0
        for param in reversed(list(self.module.parameters())):
            if not param.requires_grad:
                continue
            nbytes = param.data.nbytes
            last = buckets[-1] if buckets else None
            if (last and last[0].dtype == param.dtype and last[0].device == param.device
                    and size + nbytes <= cap):
                last.append(param)
                size += nbytes
            else:
                buckets.append([param])
                size = nbytes
        return buckets

    def _parameter_views(self):
        """{id(parameter): its view}, each view made from its bucket's token (the graph the docstring draws)."""
        views = {}
        for bucket in self._buckets():
            token = _Bucket.apply(*bucket)
            for index, param in enumerate(bucket):
                view = _BucketEntry.apply(token, bucket=token.grad_fn, index=index)
                # the view is the parameter's array: an in-place change to one is a change to both
                view._version_counter = param._version_counter
                views[id(param)] = view
        return views


@contextlib.contextmanager
def _parameters_replaced(module, views):
    """Every module slot holding a parameter holds its view until the block ends (as torch.func.functional_call)."""
    replaced = []
    for submodule in module.modules():
        for name, param in submodule._parameters.items():
            if param is not None and id(param) in views:
                replaced.append((submodule, name, param))
                submodule._parameters[name] = views[id(param)]
    try:
        yield
    finally:
        for submodule, name, param in replaced:
            submodule._parameters[name] = param


def _broadcast_from_rank_0(tensors):
    """Give every rank rank 0's values of ``tensors``, in one message per dtype and device.

    Each collective waits until every rank has reached it, so a few large
    messages cost less than one per tensor.
    """
    if dist.get_world_size() == 1:
        return
    groups = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in groups.values():
        with on_device_of(group[0].data):
            xp = get_array_module(group[0].data)
            flat = dist._broadcast_array(xp.concatenate([tensor.data.reshape(-1) for tensor in group]), 0)
            start = 0
            for tensor in group:
                tensor.data[...] = flat[start:start + tensor.data.size].reshape(tensor.shape)
                tensor._bump_version()
                start += tensor.data.size


def _check_device_ids(module, device_ids):
    if device_ids is None:
        return
    devices = {tensor.device for _, tensor in module._state_tensors()}
    wanted = [f"cuda:{d}" if isinstance(d, int) else d for d in device_ids]
    if len(wanted) != 1 or devices - set(wanted):
        raise ValueError(f"DistributedDataParallel: device_ids={device_ids!r} must name the one device the module "
                         f"is on ({', '.join(sorted(devices))}); move it first with module.to(device)")


def _check_same_model_on_every_rank(module):
    """Every rank must wrap the same architecture; else the broadcasts would pair unlike tensors."""
    layout = [(key, tensor.shape, str(tensor.dtype)) for key, tensor in module._state_tensors()]
    layouts = [None] * dist.get_world_size()
    dist.all_gather_object(layouts, layout)
    for rank, other in enumerate(layouts):
        if other != layouts[0]:
            pairs = zip(layouts[0], other)
            difference = next((f"{mine} on rank 0, {theirs} on rank {rank}" for mine, theirs in pairs if mine != theirs),
                              f"{len(layouts[0])} tensors on rank 0, {len(other)} on rank {rank}")
            raise RuntimeError(f"DistributedDataParallel: the ranks wrap different models: {difference}")
