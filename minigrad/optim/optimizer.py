"""The base class of the optimizers, and the checks they share.

``Optimizer`` keeps the parameters in ``param_groups`` and per-parameter
memory in ``state``, and saves and restores both; a subclass (sgd.py,
adam.py) says how one parameter is updated (``update``) and which
hyperparameters it accepts (``check``).
"""
import numbers

import numpy as np

from .. import backend
from ..nn.module import Module
from ..tensor import Tensor, forget_grads


class Optimizer:
    """The common part: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``.

    ``params`` is an iterable of tensors, or of dicts (parameter groups) such
    as ``[{"params": body}, {"params": head, "lr": 1e-2}]``, in which a
    hyperparameter left out takes the optimizer's default. A subclass passes
    its ``defaults`` and defines ``check(group)`` and ``update(p, grad, group)``.
    """

    def __init__(self, params, defaults):
        name = type(self).__name__
        if isinstance(params, (Tensor, dict)):
            raise TypeError(f"{name}: params must be an iterable of tensors or of dicts "
                            f"(parameter groups), got a single {type(params).__name__}; put it in a list")
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        groups = _listed(params, name)
        if not groups:
            raise ValueError(f"{name}: optimizer got an empty parameter list (a generator such as "
                             "model.parameters() is empty once it has been used: call it again)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add parameters with their own hyperparameters (the defaults fill in the rest)."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' key, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else _listed(params, name)
        seen = {id(p) for other in self.param_groups for p in other["params"]}
        for p in params:
            _check_parameter(p, name)
            if id(p) in seen:
                raise ValueError(f"{name}: a parameter of shape {p.shape} is given twice; "
                                 "each parameter may appear in only one place")
            seen.add(id(p))
        group = {**self.defaults, **group, "params": params}
        self.check(group)
        self.param_groups.append(group)

    def check(self, group):
        """Raise TypeError for a hyperparameter that is not a number (or flag), ValueError for one out of range."""
        raise NotImplementedError

    def update(self, p, grad, group):
        """Apply one step to ``p.data`` from ``grad`` (the raw gradient array)."""
        raise NotImplementedError

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure()``, if given, recomputes the loss."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.shape != p.shape:
                    raise RuntimeError(f"{type(self).__name__}.step: a parameter of shape {p.shape} "
                                       f"has a gradient of shape {p.grad.shape}")
                with backend.on_device_of(p.data):  # a GPU runs the update where p lives
                    self.update(p, p.grad.data, group)
                p._bump_version()  # p.data changed in place: a graph that saved p can no longer backward
        return loss

    def zero_grad(self, set_to_none=True):
        """Forget the gradients before the next backward: set them to None (PyTorch's default) or to zeros."""
        forget_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def state_dict(self):
        """A snapshot in PyTorch's layout, parameters numbered 0, 1, ... across the groups in order.

        ``{"state": {0: {"step": 3, "exp_avg": Tensor, ...}, ...},
        "param_groups": [{"lr": 0.001, ..., "params": [0, 1, ...]}, ...]}``.
        Unlike PyTorch's, the state arrays are copies: stepping on does not
        change a snapshot already taken.
        """
        params = [p for group in self.param_groups for p in group["params"]]
        state = {index: {key: _snapshot(value) for key, value in self.state[p].items()}
                 for index, p in enumerate(params) if p in self.state}
        groups, start = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            groups.append({**group, "params": list(range(start, start + count))})
            start += count
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state from ``state_dict()``, copied onto each parameter's device and dtype.

        Saved parameters are matched to this optimizer's by position, so it
        must be built over the same parameters in the same order. Counts and
        shapes are checked first: on an error nothing has changed.
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}: expected a dict with keys 'state' and 'param_groups', as state_dict() returns")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}: the state_dict has {len(saved_groups)} parameter groups "
                             f"but this optimizer has {len(self.param_groups)}")
        param_at = {}
        for number, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}: parameter group {number} holds {len(saved['params'])} parameters "
                                 f"in the state_dict but {len(group['params'])} here")
            missing = sorted(set(self.defaults) - set(saved))
            if missing:
                raise ValueError(f"{name}: parameter group {number} lacks {missing}; "
                                 "is this the state_dict of another kind of optimizer?")
            param_at.update(zip(saved["params"], group["params"]))
        hyperparameters = [{key: value for key, value in saved.items() if key != "params"} for saved in saved_groups]
        for group, values in zip(self.param_groups, hyperparameters):
            self.check({**group, **values})
        state = {}
        for index, values in state_dict["state"].items():
            if index not in param_at:
                raise ValueError(f"{name}: the state_dict has state for parameter {index!r}, "
                                 "which no parameter group lists")
            p = param_at[index]
            state[p] = {key: _restored(value, p, f"{name}: state {key!r} of parameter {index}")
                        for key, value in values.items()}
        self.state = state
        for group, values in zip(self.param_groups, hyperparameters):
            group.update(values)


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _is_real(value):
    """A real number: int, float or a NumPy scalar of either, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_numbers(group, name, *keys):
    """A TypeError naming the optimizer and the hyperparameter that is not a real number (lr="abc")."""
    for key in keys:
        if not _is_real(group[key]):
            raise TypeError(f"{name}: {key} must be a real number, got {type(group[key]).__name__} "
                            f"({group[key]!r})")


def _check_flag(group, name, key):
    if not isinstance(group[key], (bool, np.bool_)):
        raise TypeError(f"{name}: {key} must be True or False, got {group[key]!r}")


def _listed(params, name):
    """``params`` as a list, or a TypeError saying what was given instead (a Module: pass its parameters())."""
    if isinstance(params, Module):
        raise TypeError(f"{name}: params is a module ({type(params).__name__}), not its parameters; "
                        f"pass model.parameters(), as in {name}(model.parameters(), ...)")
    try:
        iterator = iter(params)
    except TypeError:
        raise TypeError(f"{name}: params must be an iterable of tensors or of dicts (parameter groups), "
                        f"got {type(params).__name__}") from None
    return list(iterator)


def _check_parameter(p, name):
    if isinstance(p, Module):
        raise TypeError(f"{name}: parameters must be Tensors, got the module {type(p).__name__}; "
                        "pass model.parameters() instead")
    if not isinstance(p, Tensor):
        raise TypeError(f"{name}: parameters must be Tensors, got {type(p).__name__}")
    if not backend.is_floating(p.dtype):
        raise TypeError(f"{name}: only floating-point tensors can be optimized, got one of dtype {p.dtype} "
                        f"and shape {p.shape}")
    if not p.is_leaf:
        raise ValueError(f"{name}: cannot optimize a non-leaf tensor (shape {p.shape}, made by "
                         f"{p.grad_fn.name}); optimize the leaf tensors it was computed from")


def _snapshot(value):
    """A state value for state_dict: an array becomes a Tensor holding a copy; a number stays."""
    return Tensor._from_array(value.copy()) if backend.is_array(value) else value


def _restored(value, p, where):
    """A state value from a state_dict, as an array of p's shape, dtype and device (a copy)."""
    if isinstance(value, Tensor):
        value = value.data
    if not backend.is_array(value):
        return value
    if tuple(value.shape) != p.shape:
        raise ValueError(f"{where} has shape {tuple(value.shape)} but the parameter has shape {p.shape}")
    array = backend.to_device(value, p.device)
    return array.astype(p.dtype) if backend.is_floating(array.dtype) else array.copy()
