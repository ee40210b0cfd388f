"""The tensor methods as functions: ``mg.exp(t)`` is ``t.exp()``, ``mg.sum(t, 1)`` is ``t.sum(1)``."""
from .tensor import Tensor

_METHODS = ["abs", "argmax", "clip", "exp", "flatten", "log", "log_softmax", "max", "mean", "permute",
            "relu", "reshape", "sigmoid", "softmax", "sqrt", "sum", "tanh", "transpose", "var", "view"]


def _as_function(name):
    method = getattr(Tensor, name)

    def function(t, *args, **kwargs):
        if not isinstance(t, Tensor):
            raise TypeError(f"mg.{name}: expected a Tensor, got {type(t).__name__}")
        return method(t, *args, **kwargs)

    function.__name__ = name
    function.__doc__ = method.__doc__ or f"``mg.{name}(t, ...)`` is ``t.{name}(...)``."
    return function


globals().update({name: _as_function(name) for name in _METHODS})
__all__ = list(_METHODS)
