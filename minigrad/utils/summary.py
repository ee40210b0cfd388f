"""summary: the table Keras' ``model.summary()`` prints, for a minigrad Module.

The output shapes are found by running the model once on a batch of zeros.
For that run each layer's ``forward`` is wrapped, on the instance and only
for the run, to note what it returns; ``Module.__call__`` looks ``forward``
up on the instance first, so no hook machinery is needed. The run is made in
eval mode (BatchNorm uses its running averages and so changes none of them;
Dropout does nothing) under ``no_grad``, and every module's mode is restored
afterwards.

Parameter counts follow Keras: a layer's "Param #" counts its weights and
its floating-point buffers, so a BatchNorm of C channels shows 4*C (gamma,
beta, running mean and running variance), of which the running averages are
non-trainable, as Keras' moving_mean and moving_variance are. Integer buffers
(``num_batches_tracked``, a counter Keras does not have) are not counted;
nor are parameters' gradients. A Parameter with ``requires_grad=False``
(frozen) counts as non-trainable.
"""
from dataclasses import dataclass, field

from .. import backend
from ..autograd import no_grad
from ..factories import zeros
from ..tensor import Tensor


@dataclass
class Layer:
    """One row of the table: a layer, as it was called, and its own parameter count."""
    name: str           # dotted name in the model, e.g. "0" or "block.conv"
    type: str           # class name, e.g. "Conv2d"
    output_shape: str   # e.g. "(None, 32, 28, 28)"
    params: int         # weights plus floating-point buffers, Keras' "Param #"


@dataclass
class ModelSummary:
    """What ``summary`` found: the rows, the totals and the printed table (``str()`` gives it)."""
    layers: list = field(repr=False)
    total: int
    trainable: int
    non_trainable: int
    text: str = field(repr=False)

    def __str__(self):
        return self.text


def summary(model, input_shape, batch_size=None, print_fn=print):
    """Print (with ``print_fn``; None prints nothing) and return the Keras-style summary of ``model``.

    ``input_shape`` leaves out the batch dimension, as in Keras: ``(1, 28, 28)``
    for MNIST. The output shapes show the batch as ``None`` (a batch of one
    is run) unless ``batch_size`` is given. The zeros have the dtype and
    device of the model's first parameter. Returns a ``ModelSummary`` with
    ``total``, ``trainable`` and ``non_trainable`` counts and the ``text``.
    """
    first = next(model.parameters(), None)
    dtype = backend.default_float_dtype if first is None else first.dtype
    device = "cpu" if first is None else first.device
    x = zeros(1 if batch_size is None else batch_size, *input_shape, dtype=dtype, device=device)
    layers = _run_recording(model, x, batch_size)

    trainable = [p for p in model.parameters() if p.requires_grad]
    non_trainable = [p for p in model.parameters() if not p.requires_grad] + list(_counted_buffers(model))
    totals = [("Total", trainable + non_trainable), ("Trainable", trainable), ("Non-trainable", non_trainable)]
    text = _table(type(model).__name__, layers, totals)
    result = ModelSummary(layers, *(_count(tensors) for _, tensors in totals), text)
    if print_fn is not None:
        print_fn(result.text)
    return result


def _run_recording(model, x, batch_size):
    """Run ``model(x)`` in eval mode without a graph, noting each layer's output; leave the model as it was."""
    layers = []
    modes = [(module, module.training) for module in model.modules()]
    wrapped = [(name, module) for name, module in model.named_modules() if _is_layer(module)]
    saved = [module.__dict__.get("forward") for _, module in wrapped]
    try:
        for name, module in wrapped:
            object.__setattr__(module, "forward", _recording(module, name or type(module).__name__,
                                                             layers, batch_size))
        model.eval()
        with no_grad():
            model(x)
    finally:
        for (_, module), forward in zip(wrapped, saved):
            module.__dict__.pop("forward", None)
            if forward is not None:
                object.__setattr__(module, "forward", forward)
        for module, training in modes:
            module.training = training
    return layers


def _is_layer(module):
    """A row of the table: a module without submodules, or one holding weights or buffers of its own."""
    own = list(module._parameters.values()) + list(module._buffers.values())
    return not module._modules or any(tensor is not None for tensor in own)


def _recording(module, name, layers, batch_size):
    """``module.forward``, wrapped to add a row (at the call, so rows follow call order) and fill in its shape."""
    forward = module.forward
    own = [p for p in module._parameters.values() if p is not None] + list(_counted_buffers(module, recurse=False))

    def recording_forward(*inputs, **options):
        first_call = all(layer.name != name for layer in layers)
        layer = Layer(name, type(module).__name__, "?", _count(own) if first_call else 0)
        layers.append(layer)
        output = forward(*inputs, **options)
        layer.output_shape = _shape_text(output, batch_size)
        return output

    return recording_forward


def _counted_buffers(module, recurse=True):
    """The buffers Keras would count as non-trainable weights: the floating-point ones (not counters)."""
    return (b for _, b in module.named_buffers(recurse) if backend.is_floating(b.dtype))


def _shape_text(output, batch_size):
    if isinstance(output, Tensor):
        shape = ("None" if batch_size is None else str(batch_size),) + tuple(str(n) for n in output.shape[1:])
        return "(" + ", ".join(shape) + ("," if len(shape) == 1 else "") + ")"
    if isinstance(output, (tuple, list)):
        return "[" + ", ".join(_shape_text(item, batch_size) for item in output) + "]"
    return type(output).__name__


def _count(tensors):
    return sum(t.numel() for t in tensors)


def _size(tensors):
    """The memory the tensors take, as Keras 3 writes it: ``(12.49 MB)``."""
    size, unit = float(sum(t.data.nbytes for t in tensors)), "B"
    for next_unit in ("KB", "MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, next_unit
    return f"({size:.2f} {unit})"


def _table(model_name, layers, totals):
    """Keras 2's layout: a header, one line per layer, then the totals (label, tensors) with their memory."""
    rows = [("Layer (type)", "Output Shape", "Param #")]
    rows += [(f"{layer.name} ({layer.type})", layer.output_shape, f"{layer.params:,}") for layer in layers]
    widths = [max(len(row[column]) for row in rows) + 4 for column in range(3)]

    def line(row):
        return "".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    rule = sum(widths)
    text = [f'Model: "{model_name}"', "_" * rule, line(rows[0]), "=" * rule]
    text += [line(row) for row in rows[1:]] + ["=" * rule]
    text += [f"{label} params: {_count(tensors):,} {_size(tensors)}" for label, tensors in totals]
    return "\n".join(text + ["_" * rule])
