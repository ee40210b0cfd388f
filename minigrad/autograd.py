"""The graph and the backward engine.

A ``Function`` is one node of the graph. Its ``forward`` computes on raw
arrays (NumPy or CuPy); its ``backward`` receives dL/d(output) and returns
dL/d(input) for each input, also as raw arrays. ``Function.apply`` wraps the
two: it unwraps the input tensors, runs ``forward``, and, when a gradient is
wanted, records the node as the output's ``grad_fn`` together with its inputs.
That record is the whole graph: each tensor points at the node that made it,
each node at the tensors it read.

``backward`` walks that graph from the loss back to the leaves. A node may run
only once every node that used its output has handed it a gradient (the sum
rule: a tensor used twice gets the sum of both gradients), so the walk counts,
for each node, how many consumers it has, and runs it when that count drops to
zero. This is a topological order found without recursion, so a chain of
100,000 ops is as fine as a chain of three.

A node's backward uses the arrays its forward saved. If one of them is
changed in place afterwards (an optimizer step, ``w -= lr * w.grad`` under
``no_grad``), that backward would silently compute a wrong gradient. So every
tensor carries a version, a count of the in-place changes to its array, and
``apply`` records, for each saved array that is one of the node's input or
output tensors, that tensor's version at the time; backward compares before
running the node and raises naming it, as PyTorch does.
"""
import contextlib
import threading
import weakref

import numpy as np

from . import config
from .backend import device_of, get_array_module, on_device_of

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


class _GradMode(contextlib.ContextDecorator):
    """Set recording on or off (``enabled``) inside a block, per thread, and put the old setting back after."""

    enabled = None

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.grad_enabled = self.enabled

    def __exit__(self, *exc_info):
        _state.grad_enabled = self._previous
        return False


class no_grad(_GradMode):
    """Record no graph inside this block (or decorated function): for evaluation and updates.

    The switch is per thread, so one thread evaluating does not turn off
    gradients in another that trains.
    """

    enabled = False


class enable_grad(_GradMode):
    """Record the graph inside this block even within ``no_grad`` (the backward of create_graph uses it)."""

    enabled = True


class Version:
    """How many times a tensor's array has been changed in place; tensors sharing one array (detach) share it."""

    __slots__ = ("count",)

    def __init__(self):
        self.count = 0


class Function:
    """One node of the graph: subclasses define ``forward`` and ``backward`` on arrays.

    In ``forward`` a subclass keeps what ``backward`` needs with
    ``self.save_for_backward(...)`` (arrays, freed after backward) or as plain
    attributes (shapes, axes: small things). ``self.needs_input_grad[i]``, set
    before ``forward`` runs, tells whether input i wants a gradient, so a node
    can skip saving or computing what nobody needs; ``backward`` may return
    None for an input that needs none. An optional input (a missing
    bias) is passed to ``apply`` as None and reaches ``forward`` as None.
    An input or output array saved with ``save_for_backward`` is checked for
    in-place changes before ``backward`` runs (see ``saved_versions``).
    """

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    def save_for_backward(self, *arrays):
        self.saved = arrays

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the node on tensors and, if any input needs a gradient, record it.

        While ``mg.config.fast`` is on, an op with a fast drop-in (``minigrad/fast``)
        runs that one: a subclass with a faster forward and a first-order array rule.
        """
        from .tensor import Tensor
        node = config.chosen(cls)(**options)
        for tensor in inputs:
            if tensor is not None and not isinstance(tensor, Tensor):
                raise TypeError(f"{node.name}: expected Tensor inputs, got a {type(tensor).__name__}; "
                                "wrap arrays with mg.tensor(...)")
        arrays = [None if tensor is None else tensor.data for tensor in inputs]
        _common_device(node, inputs, arrays)
        recording = is_grad_enabled()
        node.needs_input_grad = [recording and tensor is not None and tensor.requires_grad
                                 for tensor in inputs]
        with on_device_of(arrays[0]):  # on a GPU, the node's kernels run on the inputs' device
            result = node.forward(*arrays)
        if isinstance(result, np.generic):  # NumPy turns 0-d results into scalars
            result = np.asarray(result)
        output = Tensor._from_array(result)
        if any(node.needs_input_grad):
            node.inputs = inputs
            node._output = weakref.ref(output)
            node.saved_versions = saved_versions(node, inputs, arrays, output)
            output.grad_fn = node
            output._requires_grad = True
        return output

    def output(self):
        """The tensor this node made (a textbook ``backward`` may use it: y in dy/dx = y for exp)."""
        return self._output()

    @property
    def name(self):
        """The op's name for messages and graph pictures, e.g. ``Conv2d``."""
        return type(self).__name__


def saved_versions(node, inputs, arrays, output):
    """For each tensor whose array the node saved: (its Version, the count now, which tensor, the array).

    Found by identity: a saved array that *is* an input's (or the output's)
    array. Arrays the node computed itself (a copy, a mask) cannot change
    behind its back and need no check.
    """
    found = []
    for array in getattr(node, "saved", None) or ():
        if array is None:
            continue
        if array is output.data:
            found.append((output._version_counter, output._version_counter.count, "its output", array))
        for number, (tensor, data) in enumerate(zip(inputs, arrays)):
            if array is data:
                found.append((tensor._version_counter, tensor._version_counter.count, f"input {number}", array))
    return found


def check_versions(node):
    """Raise if a tensor that the node saved was changed in place since its forward ran."""
    for version, then, which, array in getattr(node, "saved_versions", ()):
        if version.count != then:
            raise RuntimeError(
                f"one of the tensors needed for the gradient of {node.name} was modified in place since "
                f"its forward pass ({which}, shape {tuple(array.shape)}, {array.dtype}): version {then} "
                f"then, {version.count} now. Change it only after backward (an optimizer step between "
                "two backward passes over one graph does this), or compute from a copy of it")


def _common_device(node, inputs, arrays):
    """Check that a node's inputs share one device ("cpu" or "cuda:N"); two devices are an error naming both."""
    device = device_of(arrays[0])
    for other, tensor in zip(arrays[1:], inputs[1:]):
        if other is not None and device_of(other) != device:
            raise RuntimeError(
                f"{node.name}: all inputs must be on one device, got {device} "
                f"and {tensor.device}; move them with .to(device)")


def backward(tensor, grad, retain_graph=False, create_graph=False):
    """Accumulate d(tensor)/d(leaf) * grad into the ``.grad`` of every leaf that needs it."""
    _run(tensor, grad, retain_graph, create_graph, on_leaf=_accumulate)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs``, as a tuple, without touching any ``.grad``.

    PyTorch's ``torch.autograd.grad``: ``outputs`` a tensor (or a sequence
    of them, their gradients summed), ``grad_outputs`` the gradient of
    each output (needed unless it is a one-element tensor, when it is 1).
    With ``create_graph=True`` the gradients are themselves in the graph,
    so they can be differentiated again; ``retain_graph`` defaults to
    ``create_graph``. An input that the outputs do not depend on is an
    error unless ``allow_unused=True``, which gives None for it.
    """
    from .tensor import Tensor
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for number, tensor in enumerate(inputs):
        if not isinstance(tensor, Tensor) or not tensor.requires_grad:
            raise RuntimeError(f"grad: input {number} does not require grad, so it has no gradient "
                               "(pass tensors created with requires_grad=True, or results computed from them)")
    retain_graph = create_graph if retain_graph is None else retain_graph
    wanted = {id(tensor): number for number, tensor in enumerate(inputs)}
    found = [None] * len(inputs)

    def capture(tensor, gradient):
        number = wanted.get(id(tensor))
        if number is not None:
            found[number] = gradient if found[number] is None else found[number] + gradient

    for output, grad_output in zip(outputs, grad_outputs):
        if not isinstance(output, Tensor) or not output.requires_grad:
            raise RuntimeError("grad: an output does not require grad and has no grad_fn: "
                               "it was not computed from any input that requires grad")
        _run(output, _initial_grad(output, grad_output, "grad"), retain_graph, create_graph,
             on_leaf=capture, stop=wanted)
    for number, gradient in enumerate(found):
        if gradient is None:
            if not allow_unused:
                raise RuntimeError(f"grad: input {number} was not used to compute the outputs (its gradient "
                                   "would be None); pass allow_unused=True if that is what you mean")
        elif not isinstance(gradient, Tensor):
            found[number] = Tensor._from_array(gradient)
    return tuple(found)


def _initial_grad(output, grad_output, caller):
    """The gradient that starts a backward pass: the given one, or 1 for a one-element output."""
    from .tensor import Tensor
    if grad_output is None:
        if output.data.size != 1:
            raise RuntimeError(f"{caller}: grad can be implicitly created only for scalar outputs; "
                               f"pass the gradient of the output (shape {output.shape})")
        with on_device_of(output.data):  # ones, even where the output is inf or NaN
            return Tensor._from_array(get_array_module(output.data).ones_like(output.data))
    if not isinstance(grad_output, Tensor):
        raise TypeError(f"{caller}: grad_outputs must be Tensors, got {type(grad_output).__name__}")
    if grad_output.shape != output.shape:
        raise RuntimeError(f"{caller}: a grad_output of shape {grad_output.shape} for an output of "
                           f"shape {output.shape}")
    return grad_output


def _run(tensor, grad, retain_graph, create_graph, on_leaf, stop=None):
    """The backward pass from ``tensor`` with gradient ``grad`` (an array, or a Tensor with create_graph).

    ``on_leaf(leaf, gradient)`` receives each leaf's gradient; ``stop`` (ids of
    tensors) names non-leaf tensors whose gradient also goes to ``on_leaf``,
    once complete (``grad()`` asks for gradients of intermediate results so).
    """
    from .tensor import Tensor
    if create_graph and not isinstance(grad, Tensor):
        grad = Tensor._from_array(grad)
    if not create_graph and isinstance(grad, Tensor):
        grad = grad.data
    root = tensor.grad_fn
    if root is None:
        on_leaf(tensor, grad)
        return
    outputs = {}  # node -> its output tensor, for the tensors grad() asks about
    if stop and id(tensor) in stop:
        outputs[root] = tensor
    # Pass 1: how many consumers does each node have inside this graph?
    consumers = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        _check_not_freed(node)
        for parent in node.inputs:
            creator = None if parent is None else parent.grad_fn
            if creator is None:
                continue
            if stop and id(parent) in stop:
                outputs[creator] = parent
            if creator not in consumers:
                consumers[creator] = 0
                stack.append(creator)
            consumers[creator] += 1

    # Pass 2: run each node once all its consumers have passed their gradient on.
    grads = {root: grad}
    ready = [root]
    while ready:
        node = ready.pop()
        grad_output = grads.pop(node)
        if node in outputs:
            on_leaf(outputs[node], grad_output)
        check_versions(node)
        input_grads = _node_backward(node, grad_output, create_graph)
        for parent, needs, parent_grad in zip(node.inputs, node.needs_input_grad, input_grads):
            if not needs:
                continue
            creator = parent.grad_fn
            with on_device_of(parent_grad.data if create_graph else parent_grad):
                parent_grad = _checked(node, parent, parent_grad)
                if creator is None:
                    on_leaf(parent, parent_grad)
                    continue
                if creator in grads:
                    grads[creator] = grads[creator] + parent_grad
                else:
                    grads[creator] = parent_grad
            consumers[creator] -= 1
            if consumers[creator] == 0:
                ready.append(creator)
        if not retain_graph:
            node.saved = None
            node.saved_versions = ()
            node.freed = True


def _node_backward(node, grad_output, create_graph):
    """One node's input gradients, as a tuple: by its array rule, or by its textbook rule on Tensors.

    The array rule (``backward_arrays``, first order only) runs when the fast
    paths are on and no graph of the gradient is wanted, or when the node has
    no textbook rule. Otherwise the textbook ``backward`` runs on Tensors,
    recording its own graph when ``create_graph`` asks for one.
    """
    textbook = type(node).backward is not Function.backward
    fast = getattr(node, "backward_arrays", None)
    if not create_graph and fast is not None and (config.fast or not textbook):
        with on_device_of(grad_output):
            result = fast(grad_output)
        return result if isinstance(result, tuple) else (result,)
    if not textbook:
        raise RuntimeError(f"{node.name} has no backward rule written with Tensor ops, so its gradient "
                           "cannot be differentiated again (create_graph=True)")
    with on_device_of(grad_output.data if create_graph else grad_output):
        if create_graph:
            with enable_grad():
                result = node.backward(grad_output)
        else:
            from .tensor import Tensor
            with no_grad():
                result = node.backward(Tensor._from_array(grad_output))
    result = result if isinstance(result, tuple) else (result,)
    if create_graph:
        return result
    return tuple(None if g is None else g.data for g in result)


def _check_not_freed(node):
    if getattr(node, "freed", False):
        raise RuntimeError(
            f"backward through the graph a second time (at {node.name}): its saved values were "
            "freed after the first backward; call backward(retain_graph=True) the first time "
            "if you need to go back through it again")


def _checked(node, tensor, grad):
    """A backward rule must give a gradient of its input's shape and dtype: say which did not."""
    from .tensor import Tensor
    if grad is None:
        raise RuntimeError(f"{node.name}.backward returned no gradient for an input that needs one")
    if isinstance(grad, Tensor):  # a textbook rule's gradient, in the graph (create_graph)
        if grad.shape != tensor.shape:
            raise RuntimeError(f"{node.name}.backward returned a gradient of shape {grad.shape} "
                               f"for an input of shape {tensor.shape}")
        if grad.dtype != tensor.dtype:
            raise RuntimeError(f"{node.name}.backward returned a {grad.dtype} gradient for a {tensor.dtype} input")
        return grad
    if isinstance(grad, np.generic):
        grad = np.asarray(grad)
    if grad.shape != tensor.shape:
        raise RuntimeError(
            f"{node.name}.backward returned a gradient of shape {grad.shape} "
            f"for an input of shape {tensor.shape}")
    if grad.dtype != tensor.dtype:  # a rule's bug: casting it here would hide it
        raise RuntimeError(f"{node.name}.backward returned a {grad.dtype} gradient for a {tensor.dtype} input")
    return grad


def _accumulate(leaf, grad):
    """Add grad into leaf.grad: gradients sum over backward calls until they are zeroed."""
    from .tensor import Tensor
    if isinstance(grad, Tensor):  # create_graph: .grad is a tensor in the graph, summed out of place
        if leaf.grad is None:
            leaf.grad = _alias(grad)
        else:
            leaf.grad = leaf.grad + grad
        return
    if leaf.grad is None:
        # A rule may hand back a read-only broadcast view or the leaf's own
        # array; .grad must be a writable array of its own.
        owned = grad is not leaf.data and 0 not in grad.strides and getattr(grad.flags, "writeable", True)
        leaf.grad = Tensor._from_array(grad if owned else grad.copy())
    else:
        leaf.grad.data = leaf.grad.data + grad


def _alias(tensor):
    """A new Tensor object for the same array and node: ``.grad`` of two leaves is never one object."""
    from .tensor import Tensor
    alias = Tensor._from_array(tensor.data)
    alias.grad_fn, alias._requires_grad = tensor.grad_fn, tensor.requires_grad
    alias._version_counter = tensor._version_counter
    return alias
