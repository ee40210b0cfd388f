"""The PyTorch twin of a minigrad network: the same layers in ``torch.nn``, with the same weights.

PyTorch is the oracle minigrad is measured against: scripts/benchmark.py
times the twin beside the original, scripts/torch_reference.py trains it, and
tests/test_torch_twin.py checks that both compute the same outputs and
gradients.

    twin(model)                 # to_torch + copy_weights: a torch model equal to ``model``
    to_torch(model)             # the same architecture, layer for layer (torch's own initial weights)
    copy_weights(model, torch_model)   # minigrad's parameters and buffers into it

The twin keeps every setting of every layer (Conv2d's stride, padding,
dilation and groups, BatchNorm's eps, momentum, missing weight or bias,
Dropout's p, ...), each layer's train/eval mode, its floating dtype, and the
names, so both state_dicts have the same keys. A layer the converter does not
know, including a subclass of a known one (its forward may differ), is a
TypeError naming it: nothing is dropped silently. torch is imported inside
the functions only, so ``models`` imports without it.
"""
from collections import OrderedDict

import numpy as np

from minigrad import nn


def _conv2d(module, tnn):
    # padding "same" with an even kernel: torch, like minigrad, puts the extra row/column last
    return tnn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                      padding=module.padding, dilation=module.dilation, groups=module.groups,
                      bias=module.bias is not None)


def _batch_norm(module, tnn):
    """BatchNorm1d/2d or SyncBatchNorm with minigrad's settings, and the same tensors present or absent.

    A tensor may be removed after construction (cifar_bn sets ``weight = None``
    for TF's ``scale=False``), so presence is read from the layer itself.
    """
    import torch
    layer = getattr(tnn, type(module).__name__)(module.num_features, eps=module.eps, momentum=module.momentum,
                                                affine=module.affine,
                                                track_running_stats=module.track_running_stats)
    for name in ("weight", "bias"):
        if getattr(module, name) is None:
            layer.register_parameter(name, None)
        elif getattr(layer, name) is None:
            layer.register_parameter(name, tnn.Parameter(torch.empty(module.num_features)))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if getattr(module, name) is None:
            layer.register_buffer(name, None)
    return layer


def _cross_entropy_loss(module, tnn):
    import torch
    weight = None if module.weight is None else torch.empty(module.weight.shape)  # filled by copy_weights
    return tnn.CrossEntropyLoss(weight=weight, ignore_index=module.ignore_index, reduction=module.reduction,
                                label_smoothing=module.label_smoothing)


# minigrad layer type -> its torch.nn layer, built from the minigrad layer's settings
CONVERTERS = {
    nn.Linear: lambda m, tnn: tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    nn.Conv2d: _conv2d,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.SyncBatchNorm: _batch_norm,
    nn.MaxPool2d: lambda m, tnn: tnn.MaxPool2d(m.kernel_size, m.stride, m.padding),
    nn.AvgPool2d: lambda m, tnn: tnn.AvgPool2d(m.kernel_size, m.stride, m.padding),  # zero padding counted, both
    nn.AdaptiveAvgPool2d: lambda m, tnn: tnn.AdaptiveAvgPool2d(m.output_size),
    nn.ReLU: lambda m, tnn: tnn.ReLU(),
    nn.Sigmoid: lambda m, tnn: tnn.Sigmoid(),
    nn.Tanh: lambda m, tnn: tnn.Tanh(),
    nn.Softmax: lambda m, tnn: tnn.Softmax(dim=m.axis),
    nn.Dropout: lambda m, tnn: tnn.Dropout(m.p),
    nn.Flatten: lambda m, tnn: tnn.Flatten(m.start_dim, m.end_dim),
    nn.CrossEntropyLoss: _cross_entropy_loss,
    nn.MSELoss: lambda m, tnn: tnn.MSELoss(reduction=m.reduction),
}


def _floating_dtype(module):
    """The dtype of the layer's own floating parameters and buffers (None when it has none)."""
    for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
        if np.dtype(tensor.dtype).kind == "f":
            return np.dtype(tensor.dtype)
    return None


def to_torch(module):
    """The same network as ``torch.nn`` modules, layer for layer, on the CPU; its weights are torch's own.

    Sequential keeps its layer names (positions, or an OrderedDict's), a layer
    used twice becomes one torch layer used twice, and each torch layer gets
    its minigrad layer's mode (train/eval) and floating dtype. Call
    ``copy_weights`` (or use ``twin``) for the same weights.
    """
    import torch
    return _convert(module, torch, "", {})


def _convert(module, torch, path, converted):
    if id(module) in converted:
        return converted[id(module)]
    where = f" (layer {path!r})" if path else ""
    if type(module) is nn.Sequential:
        layer = torch.nn.Sequential(OrderedDict(
            (name, _convert(child, torch, f"{path}.{name}" if path else name, converted))
            for name, child in module._modules.items()))
    elif type(module) in CONVERTERS:
        layer = CONVERTERS[type(module)](module, torch.nn)
        dtype = _floating_dtype(module)
        if dtype is not None:
            layer.to(getattr(torch, dtype.name))
    else:
        hint = " (convert the wrapped model, .module, instead)" if isinstance(
            module, nn.parallel.DistributedDataParallel) else ""
        known = ", ".join(sorted(kind.__name__ for kind in [nn.Sequential, *CONVERTERS]))
        raise TypeError(f"to_torch: no PyTorch twin for {type(module).__name__}{where}{hint}; "
                        f"it converts these minigrad.nn layers (exactly, not subclasses): {known}")
    layer.training = module.training  # each layer's own mode, as minigrad holds it
    converted[id(module)] = layer
    return layer


def copy_weights(module, torch_module):
    """Copy every parameter and buffer of the minigrad ``module`` into ``torch_module``; returns torch_module.

    The keys must match exactly (as ``to_torch`` makes them). Values are
    copied (from the GPU too), cast to the torch tensors' dtypes and moved to
    their devices; a minigrad parameter with ``requires_grad=False`` is frozen
    in the twin as well.
    """
    import torch
    state = module.state_dict()
    own = torch_module.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if missing or unexpected:
        raise ValueError(f"copy_weights: the state_dict keys of {type(module).__name__} and "
                         f"{type(torch_module).__name__} differ: only in torch: {missing}, only in minigrad: "
                         f"{unexpected} (build the torch model with to_torch)")
    torch_module.load_state_dict({key: torch.tensor(value.numpy()) for key, value in state.items()})
    torch_parameters = dict(torch_module.named_parameters(remove_duplicate=False))
    for name, parameter in module.named_parameters():
        torch_parameters[name].requires_grad_(parameter.requires_grad)
    return torch_module


def twin(module):
    """A torch.nn model (on the CPU) that is ``module``: the same layers, settings, modes and weights."""
    return copy_weights(module, to_torch(module))
