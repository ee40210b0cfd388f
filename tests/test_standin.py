"""The CuPy stand-in itself: strict where CuPy is strict, and its kernel emulations equal minigrad's NumPy code.

The stand-in (tests/standin) is what runs minigrad's GPU code in CI; a
stand-in laxer than CuPy would let GPU bugs through, so its strictness is
tested here, and so is each emulated kernel, against the NumPy code the
kernel replaces. These tests always use the stand-in, GPU or not.
"""
import json
import os

import numpy as np
import pytest

import minigrad as mg
from minigrad.fast import elementwise
from test_gpu import check_conv_kernels

HERE = os.path.dirname(os.path.abspath(__file__))


def test_conv_kernel_emulations_equal_the_numpy_code(standin):
    check_conv_kernels(standin)


def test_the_relu_backward_emulation_equals_the_cpu_rule(standin):
    y = np.array([[0.0, 1.0, -0.0, 3.0, 0.0]], dtype=np.float32)
    grad = np.array([[np.nan, np.nan, np.inf, -np.inf, 2.0]], dtype=np.float32)
    cpu = elementwise.ReLU()
    cpu.saved = (y,)
    gpu = elementwise.ReLU()
    gpu.saved = (standin.asarray(y),)
    np.testing.assert_array_equal(gpu.backward_arrays(standin.asarray(grad)).get(), cpu.backward_arrays(grad))


def splitmix64_draw(key, count):
    """The uniform kernel's numbers in plain Python integers: splitmix64(key + (i + 1) golden) >> 11 / 2^53."""
    mask, golden = (1 << 64) - 1, 0x9E3779B97F4A7C15
    values = []
    for i in range(count):
        z = (key + (i + 1) * golden) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        values.append((z ^ (z >> 31)) >> 11)
    return np.array(values, dtype=np.float64) / 2.0 ** 53


def test_the_uniform_emulation_is_splitmix64(standin):
    from minigrad.fast import cuda_kernels
    key = 0xDEADBEEF12345678
    np.testing.assert_array_equal(cuda_kernels.uniform((5,), np.float64, key).get(), splitmix64_draw(key, 5))
    as_float32 = cuda_kernels.uniform((5,), np.float32, key).get()
    np.testing.assert_array_equal(as_float32, np.floor(splitmix64_draw(key, 5) * 2 ** 24) / 2 ** 24)


def test_numpy_arrays_are_refused_as_cupy_refuses_them(standin):
    a = standin.asarray(np.ones(3))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    for operation in (lambda: a + np.ones(3), lambda: np.ones(3) * a, lambda: standin.maximum(a, np.ones(3)),
                      lambda: a > np.ones(3)):
        with pytest.raises(TypeError, match="Unsupported type"):
            operation()
    assert (np.float32(2) * a).get().tolist() == [2.0, 2.0, 2.0]  # NumPy scalars are fine


def test_only_cupy_14s_names_exist(standin):
    with pytest.raises(AttributeError, match="errstate"):
        standin.errstate
    with pytest.raises(AttributeError):
        standin.asarray(np.ones(2)).tobytes_not_a_method
    names = json.load(open(os.path.join(HERE, "cupy14_names.json")))["names"]["cupy"]
    own = {name for name, value in vars(standin).items()
           if not name.startswith("_") and not isinstance(value, type(standin)) and name not in ("NAMES",
                                                                                                   "DEVICE_COUNT")}
    assert own - set(names) == set(), "the stand-in defines names real CuPy 14 does not have"


def test_reductions_and_scalar_indexing_give_0d_arrays(standin):
    a = standin.asarray(np.arange(6.0).reshape(2, 3))
    for value in (a.sum(), a.max(), a[1, 2], standin.mean(a)):
        assert type(value).__module__ == "cupy" and value.ndim == 0


def test_arrays_live_on_a_device_and_ops_need_the_current_one(standin):
    with standin.cuda.Device(1):
        b = standin.zeros(3)
    assert b.device.id == 1
    with pytest.raises(ValueError, match="array device = 1 while current = 0"):
        b + 1
    with standin.cuda.Device(1):
        assert (b + 1).device.id == 1
        moved = standin.asarray(standin.ones(2))
    assert moved.device.id == 1


def test_empty_memory_reads_as_nan_and_syncs_are_counted(standin):
    assert np.isnan(standin.empty(4).get()).all()
    before = standin._standin.syncs
    a = standin.asarray(np.arange(4.0))
    a.item(0), bool(a[0]), a.get(), float(a.sum()), a[a > 1]
    assert standin._standin.syncs - before == 5


def test_a_missing_cuda_library_is_named_at_the_first_use_of_cuda(standin, monkeypatch):
    def no_cublas():
        raise OSError("libcublas.so.12: cannot open shared object file")
    monkeypatch.setattr(standin.cuda.device, "get_cublas_handle", no_cublas)
    monkeypatch.setattr(mg.backend, "_checked_cupy", set())
    with pytest.raises(RuntimeError, match=r"cuBLAS.*libcublas.*pip install"):
        mg.zeros(2, device="cuda")
