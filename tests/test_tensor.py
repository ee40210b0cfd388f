"""Tensor creation, dtypes, devices, conversion and the mg.NAME functions."""
import numpy as np
import pytest

import minigrad as mg


def test_python_floats_become_float32_and_ints_int64():
    assert mg.tensor(1.5).dtype == mg.float32
    assert mg.tensor([[1.0, 2.0]]).dtype == mg.float32
    assert mg.tensor([1, 2]).dtype == mg.int64
    assert mg.tensor(True).dtype == np.bool_


def test_arrays_keep_their_dtype_and_are_copied():
    source = np.arange(3, dtype=np.float64)
    t = mg.tensor(source)
    assert t.dtype == mg.float64
    source[0] = 42
    assert t.numpy()[0] == 0
    assert mg.tensor(np.arange(3, dtype=np.int32)).dtype == np.int32


@pytest.mark.parametrize("dtype", [mg.float64, np.float64, "float64"])
def test_dtype_argument_accepts_alias_type_and_name(dtype):
    assert mg.tensor([1, 2], dtype=dtype).dtype == mg.float64


def test_bad_data_is_a_type_error():
    with pytest.raises(TypeError, match="tensor\\(\\)"):
        mg.tensor([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match="tensor\\(\\)"):
        mg.tensor("text")


def test_attributes():
    t = mg.tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.device == "cpu"
    assert len(t) == 2 and t.numel() == 24 and t.size(1) == 3
    assert t.requires_grad is False and t.grad is None and t.is_leaf


def test_item_and_numpy():
    assert mg.tensor([[2.5]]).item() == 2.5
    with pytest.raises(ValueError, match="one element"):
        mg.tensor([1.0, 2.0]).item()
    assert isinstance(mg.tensor([1.0]).numpy(), np.ndarray)


def test_repr_looks_like_pytorch():
    assert repr(mg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mg.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert repr(mg.tensor([1.0], dtype=mg.float64)) == "tensor([1.], dtype=float64)"
    assert "grad_fn=<Mul>" in repr(mg.tensor([1.0], requires_grad=True) * 2)


def test_factories():
    assert mg.zeros(2, 3).shape == (2, 3) and mg.zeros((2, 3)).dtype == mg.float32
    assert mg.ones(4, dtype=mg.float64).numpy().sum() == 4
    assert mg.zeros_like(mg.tensor([1, 2])).dtype == mg.int64
    assert mg.ones_like(mg.tensor(np.zeros(3)), requires_grad=True).requires_grad
    np.testing.assert_array_equal(mg.arange(4).numpy(), [0, 1, 2, 3])
    assert mg.arange(4).dtype == mg.int64 and mg.arange(0.0, 1.0, 0.5).dtype == mg.float32
    assert mg.rand(1000).numpy().min() >= 0 and mg.rand(1000).numpy().max() < 1
    assert abs(mg.randn(10_000, dtype=mg.float64).numpy().std() - 1) < 0.05


def test_manual_seed_makes_random_tensors_reproducible():
    mg.manual_seed(7)
    first = mg.randn(5).numpy()
    mg.manual_seed(7)
    np.testing.assert_array_equal(first, mg.randn(5).numpy())
    assert not np.array_equal(first, mg.randn(5).numpy())


def test_scalar_operands_keep_the_tensor_dtype():
    t = mg.tensor([1.0, 2.0])
    assert (t * 2.5).dtype == mg.float32
    assert (2 - t).dtype == mg.float32
    assert (mg.tensor([1, 2]) * 2).dtype == mg.int64
    assert (mg.tensor([1, 2]) * 0.5).dtype == mg.float32
    assert (np.float64(2.0) * t).dtype == mg.float32  # NumPy scalar defers to Tensor
    np.testing.assert_allclose((2 ** mg.tensor([1.0, 3.0])).numpy(), [2.0, 8.0])


def test_comparisons_give_boolean_tensors_without_graph():
    t = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = t > 1.5
    assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal(mask.numpy(), [False, True, True])
    np.testing.assert_array_equal((t == mg.tensor([1.0, 0.0, 3.0])).numpy(), [True, False, True])
    assert (t <= 2).numpy().sum() == 2 and (t != 2).numpy().sum() == 2 and (t >= 3).numpy().sum() == 1
    assert {t: 1}[t] == 1  # hashable by identity


def test_argmax():
    t = mg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]])
    np.testing.assert_array_equal(t.argmax(axis=1).numpy(), [1, 0])
    assert mg.argmax(t).item() == 3


def test_functions_mirror_methods():
    t = mg.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(mg.sum(t, axis=1).numpy(), t.sum(axis=1).numpy())
    np.testing.assert_allclose(mg.exp(t).numpy(), np.exp(t.numpy()), rtol=1e-6)
    assert mg.reshape(t, 3, 2).shape == (3, 2) and mg.flatten(t).shape == (6,)
    with pytest.raises(TypeError, match="mg.exp: expected a Tensor"):
        mg.exp(1.0)


def test_to_dtype_and_back():
    t = mg.tensor([1.0, 2.0], requires_grad=True)
    assert t.double().dtype == mg.float64 and t.to(mg.float64).dtype == mg.float64
    assert t.to("cpu") is t and t.float() is t


def test_cuda_without_a_gpu_is_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="needs CuPy"):
        mg.tensor([1.0]).to("cuda")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        mg.zeros(2, device="cuda")


def test_bad_device_name():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        mg.tensor([1.0], device="gpu")


def test_truth_value_of_many_elements_is_ambiguous():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(mg.tensor([1.0, 2.0]))
    assert bool(mg.tensor([1.0]))
