"""Dropout: reproducible masks, inverted scaling, the keep rate, gradients and the edge cases p = 0 and 1."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.dropout import Dropout
from oracle import check_grad, randn


def dropped(x, p, seed=None):
    """Dropout of a float64 array (or of x itself if a tensor), seeding first when given a seed."""
    if seed is not None:
        mg.manual_seed(seed)
    return Dropout.apply(x if isinstance(x, mg.Tensor) else mg.tensor(x), p=p)


def test_manual_seed_makes_the_mask_reproducible():
    x = np.ones((8, 16))
    first, again, other = dropped(x, 0.5, seed=3), dropped(x, 0.5, seed=3), dropped(x, 0.5, seed=4)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert (first.numpy() != other.numpy()).any()
    assert (first.numpy() != dropped(x, 0.5).numpy()).any(), "the next call must draw a fresh mask"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_mask_values_are_zero_or_the_inverse_keep_rate(p, dtype):
    out = dropped(np.ones((50, 40), dtype=dtype), p, seed=0)
    assert out.dtype == dtype
    values = out.numpy()
    kept = values != 0
    np.testing.assert_allclose(values[kept], 1 / (1 - p), rtol=1e-7 if dtype == np.float32 else 1e-15)
    assert 0 < kept.sum() < values.size


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_fraction_is_close_to_one_minus_p(p):
    # 200,000 draws: the kept fraction's standard deviation is at most 0.0012, so 0.01 is > 8 of them
    kept = dropped(np.ones(200_000), p, seed=1).numpy() != 0
    assert abs(kept.mean() - (1 - p)) < 0.01


def test_mean_is_preserved_in_expectation():
    out = dropped(np.full(200_000, 2.0), 0.25, seed=2).numpy()
    assert abs(out.mean() - 2.0) < 0.02


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_gradient_is_the_mask(p):
    x = mg.tensor(1 + np.abs(randn(6, 7, seed=1)), requires_grad=True)  # nonzero, so output/input is the mask
    out = dropped(x, p, seed=5)
    upstream = randn(6, 7, seed=2)
    out.backward(mg.tensor(upstream))
    mask = out.numpy() / x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), upstream * mask, rtol=1e-15)


def test_p_zero_is_the_identity():
    x = mg.tensor(randn(5, 4, seed=1), requires_grad=True)
    out = dropped(x, 0.0, seed=0)
    out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((5, 4)))


@pytest.mark.filterwarnings("error")  # no division by zero on the way
def test_p_one_drops_everything_and_passes_no_gradient():
    x = mg.tensor(randn(5, 4, seed=1), requires_grad=True)
    out = dropped(x, 1.0, seed=0)
    out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), np.zeros((5, 4)))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((5, 4)))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_outside_zero_one_is_an_error(p):
    message = r"dropout: p is the probability of zeroing an element and must be in \[0, 1\], got"
    with pytest.raises(ValueError, match=message):
        Dropout(p=p)


def test_integer_input_is_an_error():
    with pytest.raises(TypeError, match="dropout: expected a floating-point input, got int64"):
        Dropout.apply(mg.tensor(np.arange(4)))


@pytest.mark.parametrize("p", [0.3, 0.6])
def test_finite_differences_with_a_fixed_mask(p):
    # reseeding inside the function gives every forward of gradcheck the same mask
    check_grad(lambda x: dropped(x, p, seed=7), randn(4, 5, seed=3))
