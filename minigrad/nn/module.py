"""Module and Parameter: how a network keeps track of its weights.

A ``Module`` is a layer or a whole network. Assigning an attribute registers
it by its type: ``self.weight = Parameter(...)`` adds a trainable tensor,
``self.conv = Conv2d(...)`` adds a submodule, and ``register_buffer`` adds a
tensor that is state but not trained (BatchNorm's running averages). From
those three registries, kept in assignment order, everything else follows:
``parameters()`` for the optimizer, ``state_dict()`` for checkpoints with
PyTorch's dotted keys (``"0.weight"``, ``"block.bn.running_mean"``),
``train()``/``eval()``, ``to(device, dtype)`` and the printed summary.
"""
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from .. import backend
from ..tensor import Tensor, forget_grads


class Parameter(Tensor):
    """A tensor that is a trainable weight of a module: requires_grad=True by default.

    ``Parameter(t)`` shares t's array (a NumPy/CuPy array is taken as it is).
    Keras: the variables in ``layer.trainable_weights``.
    """

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What ``load_state_dict(strict=False)`` left out: keys it lacked and keys it did not use."


class StateDictError(RuntimeError, ValueError):
    """A state_dict that does not fit the model: a RuntimeError as in PyTorch, and a ValueError (a bad value)."""


class Module:
    """Base class of layers and networks: subclasses set attributes in ``__init__`` and define ``forward``."""

    def __init__(self):
        # object.__setattr__ bypasses our own __setattr__, which needs these dicts.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        self.training = True

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define it in the subclass")

    def __call__(self, *inputs, **options):
        # a layer's own array code (BatchNorm counting its batches) runs on its input's GPU
        first = inputs[0].data if inputs and isinstance(inputs[0], Tensor) else None
        with backend.on_device_of(first):
            return self.forward(*inputs, **options)

    # ----- registration ----------------------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, Parameter) or name in self.__dict__.get("_parameters", ()):
            self.register_parameter(name, value)
        elif isinstance(value, Module) or name in self.__dict__.get("_modules", ()):
            self.add_module(name, value)
        elif name in self.__dict__.get("_buffers", ()):
            self.register_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when normal lookup fails, i.e. for registered names.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, {}):
                del self.__dict__[registry][name]
                return
        object.__delattr__(self, name)

    def _register(self, registry, name, value):
        """Put ``name`` in one registry, taking it out of the others: one name, one meaning."""
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"cannot assign {type(value).__name__} {name!r} before Module.__init__() "
                               f"is called: call super().__init__() first in {type(self).__name__}.__init__")
        registry = self.__dict__[registry]
        for other in (self.__dict__, self._parameters, self._buffers, self._modules):
            if other is not registry:
                other.pop(name, None)
        registry[name] = value

    def register_parameter(self, name, param):
        """Register a Parameter, or None (``bias=False``: the name exists but holds no tensor)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r} "
                            "(an nn.Parameter or None expected)")
        self._register("_parameters", name, param)

    def register_buffer(self, name, tensor):
        """Register a tensor that is saved in the state_dict and moved by ``to()``, but not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer {name!r} (a Tensor or None expected)")
        self._register("_buffers", name, tensor)

    def add_module(self, name, module):
        """Register a submodule under ``name`` (how Sequential names its layers "0", "1", ...)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"cannot assign {type(module).__name__} as child module {name!r} "
                            "(an nn.Module or None expected)")
        self._register("_modules", name, module)

    # ----- traversal ----------------------------------------------------------------
    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every submodule, depth first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """(name, module) for each direct submodule, each once."""
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_tensors(self, registry, recurse):
        """(dotted name, tensor) from one registry of every module; a tensor shared by two appears once."""
        modules = self.named_modules() if recurse else [("", self)]
        seen = set()
        for prefix, module in modules:
            for name, tensor in module.__dict__[registry].items():
                if tensor is not None and id(tensor) not in seen:
                    seen.add(id(tensor))
                    yield (f"{prefix}.{name}" if prefix else name), tensor

    def named_parameters(self, recurse=True):
        return self._named_tensors("_parameters", recurse)

    def parameters(self, recurse=True):
        """Every trainable tensor, in registration order: what an optimizer is given."""
        for _, param in self.named_parameters(recurse):
            yield param

    def named_buffers(self, recurse=True):
        return self._named_tensors("_buffers", recurse)

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse):
            yield buffer

    def apply(self, fn):
        """Call ``fn(module)`` on every submodule, then on this one (for custom initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ----- modes, gradients, devices and dtypes ----------------------------------------
    def train(self, mode=True):
        """Training mode (BatchNorm uses batch statistics, Dropout drops), recursively; returns self.

        Keras passes ``training=True/False`` at each call instead.
        """
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be True or False, got {mode!r}")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Inference mode: BatchNorm uses its running averages, Dropout is the identity. Returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Forget every parameter's gradient: set it to None (PyTorch's default) or to zeros."""
        forget_grads(self.parameters(), set_to_none)

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer (and gradient) to ``device`` and/or cast it to ``dtype``; returns self.

        The change is made in place, to each tensor's ``.data``: the Parameter
        objects stay the same, so an optimizer built earlier still holds them.
        ``dtype`` must be a floating dtype and changes only floating tensors:
        an integer buffer such as ``num_batches_tracked`` stays int64.
        ``model.to(mg.float64)`` (a dtype in first place) works too.
        """
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        if device is not None:
            device = backend.parse_device(device)
            backend.array_module(device)  # fail before changing anything if there is no GPU
        if dtype is not None:
            dtype = np.dtype(dtype)
            if not backend.is_floating(dtype):
                raise TypeError(f"Module.to: dtype must be a floating-point dtype, got {dtype}")

        def convert(array):
            if device is not None:
                array = backend.to_device(array, device)
            if dtype is not None and backend.is_floating(array.dtype):
                with backend.on_device_of(array):
                    array = array.astype(dtype, copy=False)
            return array

        for tensor in list(self.parameters()) + list(self.buffers()):
            tensor.data = convert(tensor.data)
            if tensor.grad is not None:
                tensor.grad.data = convert(tensor.grad.data)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def double(self):
        """Cast floating parameters and buffers to float64 (in place; integer buffers unchanged)."""
        return self.to(dtype=backend.float64)

    def float(self):
        """Cast floating parameters and buffers to float32 (in place; integer buffers unchanged)."""
        return self.to(dtype=backend.float32)

    # ----- state_dict ------------------------------------------------------------------
    def _state_tensors(self, prefix=""):
        """(key, tensor): this module's parameters then buffers, then each child's under ``name.``."""
        for registry in (self._parameters, self._buffers):
            for name, tensor in registry.items():
                if tensor is not None:
                    yield prefix + name, tensor
        for name, child in self._modules.items():
            if child is not None:
                yield from child._state_tensors(f"{prefix}{name}.")

    def state_dict(self):
        """An ordered dict of PyTorch's dotted keys to tensors sharing the data (not copies), buffers included.

        Keras: ``model.get_weights()``, but named rather than listed.
        """
        return OrderedDict((key, tensor.detach()) for key, tensor in self._state_tensors())

    def load_state_dict(self, state_dict, strict=True):
        """Copy values (Tensors or arrays) into the existing parameters and buffers, casting to their dtype.

        With ``strict``, the keys must match exactly; missing and unexpected
        keys are listed in one error. A value of the wrong shape, one that is
        not numbers (a string, an object), or floating-point values for an
        integer buffer such as ``num_batches_tracked`` are errors too, named by
        key. Everything is checked, and converted to each tensor's dtype and
        device, before anything is copied, so a failed load changes nothing.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            hint = "; pass module.state_dict()" if isinstance(state_dict, Module) else ""
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict of tensors (as state_dict() "
                            f"returns), got {type(state_dict).__name__}{hint}")
        own = OrderedDict(self._state_tensors())
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        problems = []
        if strict and missing:
            problems.append("Missing key(s) in state_dict: " + ", ".join(f'"{key}"' for key in missing) + ".")
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{key}"' for key in unexpected) + ".")
        values = {}
        for key, tensor in own.items():
            if key in state_dict:
                value, problem = _loadable(key, state_dict[key], tensor)
                if problem:
                    problems.append(problem)
                else:
                    values[key] = value
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                                 + "\n\t".join(problems))
        # The conversions, which allocate (and so can fail), all come before the first copy.
        for key, value in values.items():
            with backend.on_device(own[key].device):
                values[key] = backend.to_device(value, own[key].device).astype(own[key].dtype, copy=False)
        for key, value in values.items():
            with backend.on_device(own[key].device):  # CuPy writes on the current device
                own[key].data[...] = value
                own[key]._bump_version()  # a graph that saved it would now be wrong
        return IncompatibleKeys(missing, unexpected)

    # ----- printing ----------------------------------------------------------------------
    def extra_repr(self):
        """The layer's settings, shown inside its parentheses (``in_features=20, ...``)."""
        return ""

    def __repr__(self):
        """PyTorch's layout: ``Name(settings)``, or one ``(name): child`` line per submodule, indented."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        lines = extra_lines + child_lines
        text = type(self).__name__ + "("
        if len(extra_lines) == 1 and not child_lines:
            text += extra_lines[0]
        elif lines:
            text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"


def _loadable(key, value, tensor):
    """``(array, None)`` if ``value`` can be copied into ``tensor``, else ``(None, what is wrong)``."""
    given = value
    value = value.data if isinstance(value, Tensor) else value
    if not backend.is_array(value):
        try:
            value = np.asarray(value)  # a number, a nested list, a NumPy scalar
        except Exception:  # a ragged list, a foreign tensor that refuses: it is named below
            value = np.empty((), dtype=object)
    if value.dtype.kind not in "biuf":
        received = type(given).__name__
        if isinstance(given, Tensor) or backend.is_array(given):
            received += f" of dtype {value.dtype}"
        return None, (f'While copying the parameter named "{key}", expected a Tensor or an array of numbers '
                      f"from checkpoint but received {received}.")
    if tuple(value.shape) != tensor.shape:
        return None, (f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} "
                      f"from checkpoint, the shape in current model is {tensor.shape}.")
    if value.dtype.kind == "f" and not backend.is_floating(tensor.dtype):
        return None, (f'While copying the parameter named "{key}", the checkpoint holds floating-point values '
                      f"({value.dtype}) but the tensor in current model is {tensor.dtype}; cast them first.")
    return value, None
