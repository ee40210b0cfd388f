"""Optimizers: turn the gradients that ``backward`` left in ``p.grad`` into a step on ``p``.

An optimizer keeps its parameters in ``param_groups``, a list of dicts, each
holding its own hyperparameters (``lr``, ...): a learning-rate schedule
(``lr_scheduler``) writes ``group["lr"] = new_lr`` between steps, and parts of
a model can train at different rates. Per-parameter memory (a momentum
buffer, Adam's moments) lives in ``state[p]``.

The update rules are PyTorch's, number for number (``torch.optim``'s
single-tensor path), so that training runs can be compared with it. Updates
write into ``p.data`` in place, in the parameter's dtype and on its device
(``xp`` is NumPy or CuPy), and never write into ``p.grad``, whose array may be
shared with other tensors.

optimizer.py holds the base class, sgd.py and adam.py the update rules,
lr_scheduler.py the schedules.
"""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
