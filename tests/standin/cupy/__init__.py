"""A strict CuPy stand-in on NumPy, so that minigrad's GPU code runs in CI, where there is no GPU.

It behaves as CuPy 14 does wherever minigrad could trip over a difference:

- arrays are of type ``cupy.ndarray`` (module ``cupy``), so minigrad takes its GPU paths;
- implicit conversion to NumPy raises TypeError (``np.asarray(a)``), and NumPy
  arrays as operands are refused (``a + numpy_array``), as CuPy does; ``.get()``,
  ``cupy.asnumpy``, ``.item()``, ``float(a)``, ``bool(a)`` are the ways back;
- reductions and scalar indexing return 0-d arrays, not NumPy scalars;
- only the names real CuPy 14 has exist (``tests/cupy14_names.json``, written by
  ``scripts/cupy_names.py`` from the real wheel): ``cupy.errstate`` is an AttributeError;
- arrays live on one of two devices; an op on an array that is not on the
  current device (``with cupy.cuda.Device(n)``) raises ValueError;
- ``cupy.empty`` is filled with NaN (or -1), so reading memory nobody wrote shows;
- ``ElementwiseKernel`` runs an emulation, by kernel name, of minigrad's
  kernels (``_emulations.py``, each tested equal to the NumPy code);
- every device-to-host transfer or wait is counted (``cupy._standin.syncs``).

It is test infrastructure: ``tests/conftest.py`` puts it in place of CuPy for
``tests/test_gpu.py`` when no real GPU is present, and subprocesses get it
with ``PYTHONPATH=tests/standin``.
"""
import json
import os
import threading
import types

import numpy

__version__ = "14.2.0"  # the CuPy version whose names and behaviour this stands in for

with open(os.path.join(os.path.dirname(__file__), "..", "..", "cupy14_names.json")) as _file:
    NAMES = {key: set(value) for key, value in json.load(_file)["names"].items()}

DEVICE_COUNT = 2
_local = threading.local()

# What tests read: cupy._standin.syncs counts the transfers to the host and waits for the device.
_standin = types.SimpleNamespace(syncs=0, stand_in=True)


def _sync():
    _standin.syncs += 1


def _current_device():
    return getattr(_local, "device", 0)


def _refuse(value):
    raise TypeError(f"Unsupported type {type(value)}")


def _unwrap(value, check_device=True):
    """The NumPy array behind a stand-in array; NumPy arrays are refused, as CuPy refuses them."""
    if isinstance(value, ndarray):
        if check_device and value._device != _current_device():
            raise ValueError("Array device must be same as the current device: "
                             f"array device = {value._device} while current = {_current_device()}")
        return value._array
    if isinstance(value, numpy.ndarray):
        _refuse(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, check_device) for v in value)
    return value


def _wrap(value):
    if isinstance(value, numpy.ndarray):
        return ndarray._of(value)
    if isinstance(value, numpy.generic):
        return ndarray._of(numpy.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _call(function, args, kwargs):
    out = kwargs.get("out")
    result = function(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    if isinstance(out, ndarray) and result is out._array:
        return out
    return _wrap(result)


def _index(key):
    """An index for NumPy: stand-in arrays unwrapped (NumPy index arrays are allowed, as CuPy moves them)."""
    parts = key if isinstance(key, tuple) else (key,)
    unwrapped = tuple(_unwrap(p) if isinstance(p, ndarray) else p for p in parts)
    for part in unwrapped:
        if isinstance(part, numpy.ndarray) and part.dtype == bool:
            _sync()  # the size of a boolean selection is known only on the device
    return unwrapped if isinstance(key, tuple) else unwrapped[0]


class _Flags:
    def __init__(self, array):
        self.c_contiguous = array.flags.c_contiguous
        self.f_contiguous = array.flags.f_contiguous
        self.owndata = array.flags.owndata


class ndarray:
    """A NumPy array said to live on device ``_device``."""

    __slots__ = ("_array", "_device")
    __hash__ = None
    __array_priority__ = 100

    def __init__(self, shape, dtype=float):
        self._array = empty(shape, dtype)._array
        self._device = _current_device()

    @classmethod
    def _of(cls, array, device=None):
        self = cls.__new__(cls)
        self._array = array
        self._device = _current_device() if device is None else device
        return self

    # ----- host-side facts (no device work) -----
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    strides = property(lambda self: self._array.strides)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    flags = property(lambda self: _Flags(self._array))
    device = property(lambda self: cuda.Device(self._device))
    T = property(lambda self: ndarray._of(self._array.T, self._device))
    base = property(lambda self: None if self._array.base is None else ndarray._of(self._array.base, self._device))

    def __len__(self):
        return len(self._array)

    def __repr__(self):
        _sync()
        return repr(self._array)

    # ----- the ways back to the host: each one waits for the device -----
    def get(self, stream=None, order="C", out=None):
        _sync()
        return numpy.array(self._array, order=order)

    def item(self, *args):
        _sync()
        return self._array.item(*args)

    def tolist(self):
        _sync()
        return self._array.tolist()

    def __bool__(self):
        _sync()
        return bool(self._array)

    def __float__(self):
        _sync()
        return float(self._array)

    def __int__(self):
        _sync()
        return int(self._array)

    def __index__(self):
        _sync()
        return self._array.__index__()

    def __complex__(self):
        _sync()
        return complex(self._array)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        standin = globals().get(ufunc.__name__)
        if not isinstance(standin, _Ufunc):
            return NotImplemented
        return getattr(standin, method if method != "__call__" else "__call__")(*inputs, **kwargs)

    def __array_function__(self, function, types_, args, kwargs):
        name = function.__name__
        if name not in NAMES["cupy"]:
            return NotImplemented
        return getattr(_this_module, name)(*args, **kwargs)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[k] for k in range(len(self)))

    # ----- views and copies -----
    def __getitem__(self, key):
        array = self._array
        key = _index(key)
        if not isinstance(key, tuple) or any(isinstance(p, numpy.ndarray) for p in key):
            _unwrap(self)  # gathering runs a kernel on the current device
        return _wrap(array[key])

    def __setitem__(self, key, value):
        _unwrap(self)
        if isinstance(value, numpy.ndarray):
            value = numpy.array(value)  # a host-to-device copy, allowed
        else:
            value = _unwrap(value)
        self._array[_index(key)] = value

    def copy(self, order="C"):
        """A copy on the current device, whichever device holds this array (as CuPy's copy)."""
        return ndarray._of(self._array.copy(order=order))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        _unwrap(self)
        return ndarray._of(self._array.astype(dtype, order=order, copy=copy))

    def set(self, array, stream=None):
        if not isinstance(array, numpy.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(array)}")
        self._array[...] = array

    def __getattr__(self, name):
        if name not in NAMES["cupy.ndarray"] or not hasattr(numpy.ndarray, name):
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (not in CuPy 14)")
        method = getattr(self._array, name)

        def call(*args, **kwargs):
            _unwrap(self)
            return _call(method, args, kwargs)
        return call

    # ----- operators: the ufuncs, so NumPy operands are refused -----
    def __neg__(self):
        return negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return absolute(self)

    def __invert__(self):
        return invert(self)


def _operator(ufunc_name, reflected=False, inplace=False):
    def method(self, other):
        ufunc = globals()[ufunc_name]
        if inplace:
            return ufunc(self, other, out=self)
        return ufunc(other, self) if reflected else ufunc(self, other)
    return method


for _name, _ufunc in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
                      ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"),
                      ("matmul", "matmul"), ("and", "bitwise_and"), ("or", "bitwise_or"),
                      ("xor", "bitwise_xor"), ("lshift", "left_shift"), ("rshift", "right_shift")]:
    setattr(ndarray, f"__{_name}__", _operator(_ufunc))
    setattr(ndarray, f"__r{_name}__", _operator(_ufunc, reflected=True))
    setattr(ndarray, f"__i{_name}__", _operator(_ufunc, inplace=True))
for _name, _ufunc in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                      ("eq", "equal"), ("ne", "not_equal")]:
    setattr(ndarray, f"__{_name}__", _operator(_ufunc))


class _Ufunc:
    """A CuPy ufunc over NumPy's: the same loops, NumPy operands refused, 0-d arrays for scalars."""

    def __init__(self, name):
        self.name = self.__name__ = name
        self._numpy = getattr(numpy, name)

    def __call__(self, *args, **kwargs):
        return _call(self._numpy, args, kwargs)

    def __getattr__(self, method):
        if method not in NAMES["cupy.ufunc"]:
            raise AttributeError(f"'cupy.ufunc' object has no attribute {method!r}")
        numpy_method = getattr(self._numpy, method)
        return lambda *args, **kwargs: _call(numpy_method, args, kwargs)

    def __repr__(self):
        return f"<ufunc '{self.name}'>"


# ----- making arrays -----
def empty(shape, dtype=float, order="C"):
    """Memory nobody wrote: NaN (or -1, or True) so that reading it shows, where CUDA leaves garbage."""
    array = numpy.empty(shape, dtype=dtype, order=order)
    array.fill(numpy.nan if array.dtype.kind in "fc" else (True if array.dtype == bool else -1))
    return ndarray._of(array)


def empty_like(a, dtype=None, order="K", shape=None):
    return empty(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    """An array on the current device, copied from the host or from another device."""
    if isinstance(obj, ndarray):
        return ndarray._of(numpy.array(obj._array, dtype=dtype, copy=True, order=order, ndmin=ndmin))
    if isinstance(obj, (list, tuple)) and any(isinstance(v, ndarray) for v in obj):
        obj = [v._array if isinstance(v, ndarray) else v for v in obj]
    return ndarray._of(numpy.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None, blocking=False):
    """``a`` itself when it is on the current device with the dtype asked for, else a copy there."""
    if isinstance(a, ndarray) and a._device == _current_device() and (dtype is None or a.dtype == dtype):
        return a
    return array(a, dtype=dtype)


def ascontiguousarray(a, dtype=None):
    return _call(numpy.ascontiguousarray, (a,), {"dtype": dtype})


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    return _this_module if any(isinstance(a, ndarray) for a in args) else numpy


class ElementwiseKernel:
    """CuPy's user-defined kernel, run by the NumPy emulation registered under its name."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, **kwargs):
        from . import _emulations
        if name not in _emulations.KERNELS:
            raise NotImplementedError(f"the CuPy stand-in has no emulation of kernel {name!r}")
        self.name, self.emulation = name, _emulations.KERNELS[name]
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.operation, self.options = operation, kwargs.get("options", ())

    def __call__(self, *args, size=None, block_size=None):
        params = self.in_params + self.out_params
        if len(args) not in (len(self.in_params), len(params)):
            raise TypeError(f"Wrong number of arguments for {self.name!r}: "
                            f"{len(self.in_params)} or {len(params)} expected, {len(args)} given")
        for value in args:
            if isinstance(value, numpy.ndarray):
                _refuse(value)
            _unwrap(value)  # on the current device
        typed = [v.dtype for v, (raw, kind, _) in zip(args, params) if kind == "T" and isinstance(v, ndarray)]
        if len(set(typed)) > 1:
            raise TypeError(f"{self.name}: type T is bound to more than one dtype: {typed}")
        dtype_t = typed[0] if typed else None
        values = {}
        for value, (raw, kind, name) in zip(args, params):
            if isinstance(value, ndarray):
                values[name] = value._array
            else:
                values[name] = (dtype_t if kind == "T" else numpy.dtype(kind)).type(value)
        shapes = [values[name].shape for raw, kind, name in params[:len(args)]
                  if not raw and isinstance(values[name], numpy.ndarray)]
        shape = numpy.broadcast_shapes(*shapes) if shapes else ()
        outputs = [args[k] if k < len(args) else empty(shape, dtype_t)
                   for k in range(len(self.in_params), len(params))]
        for (raw, kind, name), out in zip(self.out_params, outputs):
            if out.shape != shape or (kind == "T" and out.dtype != dtype_t):
                raise ValueError(f"{self.name}: output {name} of shape {out.shape}, dtype {out.dtype} "
                                 f"does not match {shape}, {dtype_t}")
            values[name] = out._array
        self.emulation(**values)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _params(text):
    """'raw T x, int32 n' -> [(True, 'T', 'x'), (False, 'int32', 'n')]."""
    result = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        words = part.split()
        result.append((words[0] == "raw", words[-2], words[-1]))
    return result


def _missing(name):
    return AttributeError(f"module 'cupy' has no attribute {name!r} (real CuPy 14 has no such name)")


def __getattr__(name):
    if name not in NAMES["cupy"]:
        raise _missing(name)
    value = getattr(numpy, name, None)
    if isinstance(value, numpy.ufunc):
        wrapped = _Ufunc(name)
    elif callable(value) and not isinstance(value, type):
        wrapped = lambda *args, **kwargs: _call(value, args, kwargs)  # noqa: E731
        wrapped.__name__ = name
    elif value is not None:
        wrapped = value  # constants and dtypes: pi, inf, float32, ...
    else:
        raise AttributeError(f"module 'cupy' has no attribute {name!r} in this stand-in "
                             "(CuPy 14 has it; emulate it here if minigrad needs it)")
    globals()[name] = wrapped
    return wrapped


import sys as _sys  # noqa: E402

_this_module = _sys.modules[__name__]
# the ufuncs behind the operators, made now rather than on first use
for _name in ("negative", "absolute", "invert", "add", "subtract", "multiply", "true_divide", "floor_divide",
              "remainder", "power", "matmul", "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift",
              "right_shift", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal"):
    globals()[_name] = _Ufunc(_name)

from . import cuda, _core  # noqa: E402, F401
