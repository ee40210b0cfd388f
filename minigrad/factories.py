"""Tensor factories: zeros, ones, random tensors and ranges, on any device."""
import numpy as np

from . import backend
from .tensor import Tensor


def _shape(shape):
    """Accept both zeros(2, 3) and zeros((2, 3))."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _make(array, requires_grad):
    return Tensor(array, requires_grad=requires_grad)


def _float_dtype(dtype):
    return backend.default_float_dtype if dtype is None else np.dtype(dtype)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    xp = backend.array_module(device)
    with backend.on_device(device):  # "cuda:1" allocates on GPU 1, not on the current one
        return _make(xp.zeros(_shape(shape), dtype=_float_dtype(dtype)), requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    xp = backend.array_module(device)
    with backend.on_device(device):
        return _make(xp.ones(_shape(shape), dtype=_float_dtype(dtype)), requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from minigrad's seeded generator (see ``manual_seed``)."""
    xp = backend.array_module(device)
    with backend.on_device(device):
        array = backend.generator(xp).standard_normal(_shape(shape)).astype(_float_dtype(dtype), copy=False)
        return _make(array, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from minigrad's seeded generator."""
    xp = backend.array_module(device)
    with backend.on_device(device):
        array = backend.generator(xp).random(_shape(shape)).astype(_float_dtype(dtype), copy=False)
        return _make(array, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Like torch.arange: integers give int64, any float argument gives float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        floats = any(isinstance(v, float) for v in (start, end, step))
        dtype = backend.default_float_dtype if floats else backend.int64
    xp = backend.array_module(device)
    with backend.on_device(device):
        return _make(xp.arange(start, end, step, dtype=np.dtype(dtype)), requires_grad)
