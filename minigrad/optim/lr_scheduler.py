"""Learning-rate schedules: ``StepLR`` and ``CosineAnnealingLR``, as ``torch.optim.lr_scheduler``.

A scheduler holds an optimizer and, at each ``step()`` (once per epoch, or
per batch, after ``optimizer.step()``), writes a new ``group["lr"]`` into
each of its parameter groups. The rate of a group is a function of its
starting rate ``base_lr`` (saved in the group as ``initial_lr``, as PyTorch
does) and of ``last_epoch``, the number of ``step()`` calls since it was built::

    optimizer = mg.optim.SGD(model.parameters(), lr=0.1)
    scheduler = mg.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(model, optimizer)   # trains with lr = 0.1 * 0.1 ** (epoch // 30)
        scheduler.step()

PyTorch's ``step()`` updates the rate from the current one (``lr * gamma``;
for the cosine a ratio of two cosines); minigrad evaluates the same schedule
from its closed form (PyTorch's ``_get_closed_form_lr``), which is exact at
every epoch up to one rounding per operation; the recursion accumulates
rounding, and the two agree to about 1e-13 over hundreds of steps. The one
difference: PyTorch's recursive form also carries along a change that
something else made to ``group["lr"]`` (another scheduler), where the closed
form overwrites it.
"""
import math
import numbers

from .optimizer import Optimizer, _is_real

# Keys of a PyTorch scheduler's state_dict that only serve its warnings; load_state_dict skips them.
_TORCH_BOOKKEEPING = {"_step_count", "_get_lr_called_within_step", "_is_initial"}


class LRScheduler:
    """The common part: ``base_lrs``, ``last_epoch``, ``step()``, ``get_last_lr()``, ``state_dict()``.

    Building a scheduler is its first step: ``last_epoch`` goes from -1 to 0
    and each group gets ``lr = base_lr``. With ``last_epoch=k >= 0`` (a
    restart from a checkpoint of epoch k) the groups must already hold
    ``initial_lr``; ``last_epoch`` becomes k + 1 and the rate is that of
    epoch k + 1, as PyTorch's StepLR gives when the groups hold the rate of
    epoch k (its CosineAnnealingLR keeps the group's rate for that epoch).
    Resuming through ``load_state_dict`` is simpler. A subclass defines
    ``lr_at(base_lr, epoch)``, ``check`` and its ``hyperparameters``.
    """

    hyperparameters = ()  # the names a subclass saves in its state_dict besides base_lrs and last_epoch

    def __init__(self, optimizer, last_epoch=-1):
        name = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: optimizer must be a minigrad.optim optimizer (SGD, Adam, ...), "
                            f"got {type(optimizer).__name__}")
        if not isinstance(last_epoch, numbers.Integral) or isinstance(last_epoch, bool):
            raise TypeError(f"{name}: last_epoch must be an integer, got {type(last_epoch).__name__} "
                            f"({last_epoch!r})")
        if last_epoch < -1:
            raise ValueError(f"{name}: last_epoch must be >= -1 (-1 to start a schedule), got {last_epoch}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for number, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{name}: param_groups[{number}] has no 'initial_lr', needed to resume "
                                   f"with last_epoch={last_epoch}; load the optimizer's state_dict first, "
                                   "or start with last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self.step()

    def lr_at(self, base_lr, epoch):
        """The learning rate of a group that started at ``base_lr``, at ``epoch`` (the closed form)."""
        raise NotImplementedError

    def step(self):
        """Advance one epoch: ``last_epoch += 1``, and set every group's lr to the schedule's value there."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise RuntimeError(f"{type(self).__name__}.step: the optimizer has {len(groups)} parameter groups "
                               f"but the scheduler was built for {len(self.base_lrs)}; build the scheduler "
                               "after the last add_param_group")
        self.last_epoch += 1
        for group, base_lr in zip(groups, self.base_lrs):
            group["lr"] = self.lr_at(base_lr, self.last_epoch)
        self._last_lr = [group["lr"] for group in groups]

    def get_last_lr(self):
        """The learning rates the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self):
        """PyTorch's keys: the hyperparameters, ``base_lrs``, ``last_epoch`` and ``_last_lr`` (not the optimizer)."""
        state = {key: getattr(self, key) for key in self.hyperparameters}
        state.update(base_lrs=list(self.base_lrs), last_epoch=self.last_epoch, _last_lr=list(self._last_lr))
        return state

    def load_state_dict(self, state_dict):
        """Restore what ``state_dict()`` saved (a PyTorch scheduler's state_dict loads too).

        The next ``step()`` then continues the schedule where the saved one
        was; the optimizer's own lrs come back with its ``load_state_dict``.
        Everything is checked first: on an error nothing has changed.
        """
        name = f"{type(self).__name__}.load_state_dict"
        keys = {*self.hyperparameters, "base_lrs", "last_epoch", "_last_lr"}
        if not isinstance(state_dict, dict):
            raise TypeError(f"{name}: expected a dict, as state_dict() returns, got {type(state_dict).__name__}")
        missing, unknown = keys - set(state_dict), set(state_dict) - keys - _TORCH_BOOKKEEPING
        if missing or unknown:
            problems = [f"lacks {sorted(missing)}"] if missing else []
            problems += [f"has unknown keys {sorted(unknown)}"] if unknown else []
            raise ValueError(f"{name}: the state_dict {' and '.join(problems)}; "
                             "is it the state_dict of another kind of scheduler?")
        count = len(self.optimizer.param_groups)
        for key in ("base_lrs", "_last_lr"):
            values = state_dict[key]
            if not isinstance(values, (list, tuple)) or len(values) != count or not all(map(_is_real, values)):
                raise ValueError(f"{name}: {key} must be a list of {count} numbers, one per parameter group, "
                                 f"got {values!r}")
        last_epoch = state_dict["last_epoch"]
        if not isinstance(last_epoch, numbers.Integral) or isinstance(last_epoch, bool) or last_epoch < 0:
            raise ValueError(f"{name}: last_epoch must be an integer >= 0, got {last_epoch!r}")
        self.check(**{key: state_dict[key] for key in self.hyperparameters})
        for key in self.hyperparameters:
            setattr(self, key, state_dict[key])
        self.base_lrs, self.last_epoch = list(state_dict["base_lrs"]), int(last_epoch)
        self._last_lr = list(state_dict["_last_lr"])

    def check(self, **hyperparameters):
        """Raise TypeError or ValueError, naming the scheduler, for a hyperparameter out of place."""
        raise NotImplementedError


def _check_epoch_count(scheduler, name, value, meaning):
    """A schedule's length in epochs must be an integer > 0 (bools, floats and strings are refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{scheduler}: {name} must be an integer ({meaning}), got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{scheduler}: {name} must be > 0, got {value}")


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs::

        lr(epoch) = base_lr * gamma ** (epoch // step_size)

    With ``lr=0.05, step_size=30, gamma=0.1``: 0.05 for epochs 0-29, 0.005
    for 30-59, 0.0005 for 60-89, ...
    """

    hyperparameters = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.check(step_size=step_size, gamma=gamma)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def check(self, step_size, gamma):
        _check_epoch_count("StepLR", "step_size", step_size, "epochs between decays")
        if not _is_real(gamma):
            raise TypeError(f"StepLR: gamma must be a real number, got {type(gamma).__name__} ({gamma!r})")
        if not gamma > 0:
            raise ValueError(f"StepLR: gamma must be > 0 (the factor applied every step_size epochs), got {gamma}")

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Follow half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs::

        lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    (Loshchilov and Hutter's SGDR without the restarts). The formula goes on
    past ``T_max``: the rate climbs back to ``base_lr`` at ``2 * T_max``, then
    falls again, with period ``2 * T_max``, as PyTorch's scheduler does.
    Stop stepping at ``T_max``, or choose ``T_max`` as the total number of
    steps, to end at ``eta_min``.
    """

    hyperparameters = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.check(T_max=T_max, eta_min=eta_min)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def check(self, T_max, eta_min):
        _check_epoch_count("CosineAnnealingLR", "T_max", T_max, "epochs of the half cosine")
        if not _is_real(eta_min):
            raise TypeError(f"CosineAnnealingLR: eta_min must be a real number, got {type(eta_min).__name__} "
                            f"({eta_min!r})")
        if not eta_min >= 0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be >= 0 (the lowest learning rate), got {eta_min}")

    def lr_at(self, base_lr, epoch):
        # the same expression, in the same order, as PyTorch's _get_closed_form_lr
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
