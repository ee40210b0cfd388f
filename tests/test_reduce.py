"""Reductions: sum, mean, var, max over every kind of axis argument."""
import numpy as np
import pytest

import minigrad as mg
from oracle import check_grad, check_op, randn, requires_torch, torch

AXES = [None, 0, 1, -1, (0, 2), (0, 1, 2)]


def _torch_dim(axis):
    return tuple(range(3)) if axis is None else axis


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "var", "var_unbiased", "max"])
def test_reduction_gradients(op, axis, keepdims):
    x = randn(2, 3, 4, seed=6)
    if op == "var_unbiased":
        check_grad(lambda t: t.var(axis=axis, keepdims=keepdims, unbiased=True), x)
    else:
        check_grad(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), x)


@requires_torch
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_pytorch(axis, keepdims):
    x = randn(2, 3, 4, seed=7)
    dim = _torch_dim(axis)
    check_op(lambda t: t.sum(axis=axis, keepdims=keepdims), lambda t: t.sum(dim=dim, keepdim=keepdims), x)
    check_op(lambda t: t.mean(axis=axis, keepdims=keepdims), lambda t: t.mean(dim=dim, keepdim=keepdims), x)
    check_op(lambda t: t.var(axis=axis, keepdims=keepdims),
             lambda t: t.var(dim=dim, keepdim=keepdims, unbiased=False), x)
    check_op(lambda t: t.var(axis=axis, keepdims=keepdims, unbiased=True),
             lambda t: t.var(dim=dim, keepdim=keepdims, unbiased=True), x)
    check_op(lambda t: t.max(axis=axis, keepdims=keepdims), lambda t: t.amax(dim=dim, keepdim=keepdims), x)


@requires_torch
def test_max_shares_the_gradient_between_ties_like_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    check_op(lambda t: t.max(axis=1), lambda t: t.amax(dim=1), x)
    check_op(lambda t: t.max(), lambda t: t.amax(), x)


def test_var_is_biased_by_default_as_numpy_and_tf_moments():
    x = randn(10, seed=8)
    assert mg.tensor(x).var().item() == pytest.approx(np.var(x))
    assert mg.tensor(x).var(unbiased=True).item() == pytest.approx(np.var(x, ddof=1))


def test_sum_of_a_scalar():
    x = mg.tensor(3.0, dtype=mg.float64, requires_grad=True)
    x.sum().backward()
    assert x.grad.item() == 1.0


@pytest.mark.parametrize("axis", [3, -4, (0, 0)])
def test_bad_axis_names_the_op(axis):
    with pytest.raises(ValueError, match="sum: axis"):
        mg.tensor(np.zeros((2, 3, 4))).sum(axis=axis)


def test_max_of_empty_tensor():
    with pytest.raises(ValueError, match="max: cannot take the maximum of an empty tensor"):
        mg.tensor(np.zeros((0, 3))).max()
