"""Optimizers: turn the gradients that ``backward`` left in ``p.grad`` into a step on ``p``.

An optimizer keeps its parameters in ``param_groups``, a list of dicts, each
holding its own hyperparameters (``lr``, ...): a learning-rate schedule writes
``group["lr"] = new_lr`` between steps, and parts of a model can train at
different rates. Per-parameter memory (a momentum buffer, Adam's moments)
lives in ``state[p]``.

The update rules are PyTorch's, number for number (``torch.optim``'s
single-tensor path), so that training runs can be compared with it. Updates
write into ``p.data`` in place, in the parameter's dtype and on its device
(``xp`` is NumPy or CuPy), and never write into ``p.grad``, whose array may be
shared with other tensors.
"""
import numbers

import numpy as np

from . import backend
from .nn.module import Module
from .ops import kernels_cuda
from .tensor import Tensor


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
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    with backend.on_device_of(p.data):
                        p.grad = Tensor._from_array(backend.get_array_module(p.data).zeros_like(p.data))

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


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov momentum and L2 weight decay.

    With gradient g, weight decay wd, momentum mu, dampening tau, per step::

        g <- g + wd * p                                  (L2 penalty wd/2 * |p|^2)
        buf <- g at the first step, then buf <- mu * buf + (1 - tau) * g
        g <- g + mu * buf  if nesterov,  else  g <- buf
        p <- p - lr * g

    Keras: ``SGD(learning_rate, momentum, nesterov)`` keeps the velocity
    v = -lr * buf instead (the same steps while lr is constant, but a new lr
    takes effect gradually there); its ``weight_decay`` is decoupled
    (p <- p - lr * wd * p), which differs from the one here once there is momentum.
    """

    def __init__(self, params, lr, momentum=0, weight_decay=0, nesterov=False, dampening=0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, dampening=dampening))

    def check(self, group):
        _check_numbers(group, "SGD", "lr", "momentum", "weight_decay", "dampening")
        _check_flag(group, "SGD", "nesterov")
        _check(group["lr"] >= 0, f"SGD: lr must be >= 0, got {group['lr']}")
        _check(group["momentum"] >= 0, f"SGD: momentum must be >= 0, got {group['momentum']}")
        _check(group["weight_decay"] >= 0, f"SGD: weight_decay must be >= 0, got {group['weight_decay']}")
        _check(not group["nesterov"] or (group["momentum"] > 0 and group["dampening"] == 0),
               "SGD: nesterov=True needs momentum > 0 and dampening=0")

    def update(self, p, grad, group):
        # Python floats, so that NumPy computes in the parameter's dtype
        # (a NumPy float64 hyperparameter would promote float32 arrays).
        lr, momentum, weight_decay = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        if weight_decay != 0:
            grad = grad + weight_decay * p.data  # a new array: p.grad stays as it is
        if momentum != 0:
            state = self.state.setdefault(p, {})
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1 - float(group["dampening"])) * grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        p.data -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): steps scaled by running averages of the gradient and its square.

    With gradient g_t at step t = 1, 2, ... and m_0 = v_0 = 0::

        g_t <- g_t + weight_decay * p                  (L2 penalty, only if weight_decay > 0)
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t        first moment, state "exp_avg"
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2      second moment, state "exp_avg_sq"
        m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)    bias correction
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    Bias correction undoes the pull towards the zero start: early averages
    would otherwise be too small. As PyTorch does, the last line is computed
    as ``p -= (lr / (1 - beta1^t)) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)``.

    Keras: ``Adam(learning_rate, beta_1, beta_2, epsilon)``, where epsilon
    (default 1e-7) is added to sqrt(v_t) before the bias correction, i.e. it
    is eps * sqrt(1 - beta2^t) here; Keras' ``weight_decay`` is decoupled, as in AdamW.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check(self, group):
        name = type(self).__name__
        _check_numbers(group, name, "lr", "eps", "weight_decay")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or not all(_is_real(beta) for beta in betas):
            raise TypeError(f"{name}: betas must be a pair of real numbers (beta1, beta2), got {betas!r}")
        _check(len(betas) == 2, f"{name}: betas must be a pair (beta1, beta2), got {betas}")
        _check(group["lr"] >= 0, f"{name}: lr must be >= 0, got {group['lr']}")
        _check(group["eps"] >= 0, f"{name}: eps must be >= 0, got {group['eps']}")
        for number, beta in enumerate(betas, start=1):
            _check(0 <= beta < 1, f"{name}: beta{number} must be in [0, 1), got {beta}")
        _check(group["weight_decay"] >= 0, f"{name}: weight_decay must be >= 0, got {group['weight_decay']}")

    def update(self, p, grad, group):
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        xp = backend.get_array_module(p.data)
        state = self.state.setdefault(p, {})
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                p.data *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * p.data  # a new array: p.grad stays as it is
        step_size, bias_correction2_sqrt = lr / (1 - beta1 ** t), (1 - beta2 ** t) ** 0.5
        if backend.is_cupy_array(p.data):  # the same operations in one fused launch
            kernels_cuda.adam_update(p.data, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size)
            return
        arrays = (p.data, m, v, grad)
        if not all(a.flags.c_contiguous for a in arrays):
            _adam_update(*arrays, beta1, beta2, bias_correction2_sqrt, eps, step_size)
            return
        # A big weight (mnist_bn's 3-million-weight Linear) is updated in slices, one per
        # thread: NumPy runs each line on one core, and every weight's update is
        # independent of the others, so the result is the same as in one piece.
        # Each thread then goes through its slice in pieces of _PIECE weights, so
        # that the thirteen passes of _adam_update find the piece of p, m, v, grad and
        # the scratch array still in the processor's cache, instead of streaming
        # 13 MB arrays through main memory thirteen times.
        flat = [a.reshape(-1) for a in arrays]

        def update(part):
            for start in range(part.start, part.stop, _PIECE):
                piece = slice(start, min(start + _PIECE, part.stop))
                _adam_update(*(a[piece] for a in flat), beta1, beta2, bias_correction2_sqrt, eps, step_size)
        backend.run_on_slices(update, p.data.size, p.data, min_size=_PARALLEL_SIZE)


# Below this many weights a thread's start costs more than it saves: smaller weights
# are updated in one piece (run_on_slices' min_size).
_PARALLEL_SIZE = 1 << 18
# 256 Ki weights, 1 MiB per float32 array: five such arrays per thread fit in the
# cache of the 2-core machine of docs/performance.md (32 MiB L3), and fewer, larger
# pieces keep the Python calls per piece cheap (much smaller pieces were slower there).
_PIECE = 1 << 18


def _adam_update(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size):
    """Adam's update of p, m and v in place, with one scratch array the size of p.

    On a 3-million-weight model that halves the step's time against writing
    each line as a fresh expression.
    """
    xp = backend.get_array_module(p)
    scratch = grad * (1 - beta1)
    m *= beta1
    m += scratch                                     # m_t
    xp.multiply(grad, grad, out=scratch)
    scratch *= 1 - beta2
    v *= beta2
    v += scratch                                     # v_t
    xp.sqrt(v, out=scratch)
    scratch /= bias_correction2_sqrt
    scratch += eps                                   # sqrt(v_hat) + eps
    xp.divide(m, scratch, out=scratch)
    scratch *= step_size
    p -= scratch


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019).

    Before the Adam step on the plain gradient, the weights shrink::

        p <- p * (1 - lr * weight_decay)

    so the decay does not pass through Adam's per-weight scaling (in Adam the
    L2 term is divided by sqrt(v_hat) like the rest of the gradient).
    Keras: ``AdamW(learning_rate, weight_decay, beta_1, beta_2, epsilon)``,
    the same rule, with weight_decay defaulting to 0.004 there, 0.01 here.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


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


def _is_array(value):
    return isinstance(value, np.ndarray) or backend.is_cupy_array(value)


def _snapshot(value):
    """A state value for state_dict: an array becomes a Tensor holding a copy; a number stays."""
    return Tensor._from_array(value.copy()) if _is_array(value) else value


def _restored(value, p, where):
    """A state value from a state_dict, as an array of p's shape, dtype and device (a copy)."""
    if isinstance(value, Tensor):
        value = value.data
    if not _is_array(value):
        return value
    if tuple(value.shape) != p.shape:
        raise ValueError(f"{where} has shape {tuple(value.shape)} but the parameter has shape {p.shape}")
    array = backend.to_device(value, p.device)
    return array.astype(p.dtype) if backend.is_floating(array.dtype) else array.copy()
