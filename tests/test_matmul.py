"""Matrix products and linear: every rank combination, batching, errors."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.matmul import Linear
from oracle import check_grad, check_op, randn, requires_torch, torch

SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
          ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3), (3, 1))]


@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
def test_matmul_gradients(a_shape, b_shape):
    check_grad(lambda a, b: a @ b, randn(*a_shape, seed=12), randn(*b_shape, seed=13))


@requires_torch
@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
def test_matmul_matches_pytorch(a_shape, b_shape):
    check_op(lambda a, b: a @ b, lambda a, b: a @ b, randn(*a_shape, seed=14), randn(*b_shape, seed=15))


LINEAR_SHAPES = [(5, 3, 4), (1, 3, 4), (7, 1, 1), ((2, 3), 4, 2)]


@pytest.mark.parametrize("rows,in_features,out_features", LINEAR_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients_and_pytorch(rows, in_features, out_features, bias):
    rows = rows if isinstance(rows, tuple) else (rows,)
    arrays = [randn(*rows, in_features, seed=16), randn(out_features, in_features, seed=17)]
    if bias:
        arrays.append(randn(out_features, seed=18))
    check_grad(lambda *t: Linear.apply(*t), *arrays)
    if torch is not None:
        check_op(lambda *t: Linear.apply(*t), torch.nn.functional.linear, *arrays)


def test_matmul_shape_error():
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) do not fit"):
        mg.zeros(3, 4) @ mg.zeros(5, 2)


def test_matmul_dtype_error():
    with pytest.raises(TypeError, match="matmul: inputs must have one dtype, got a float32, b float64"):
        mg.zeros(3, 4) @ mg.zeros(4, 2, dtype=mg.float64)


def test_linear_feature_error():
    x, w = mg.zeros(32, 30), mg.zeros(50, 20)
    with pytest.raises(ValueError, match=r"linear: input has 30 features but weight expects 20 \(input \(32, 30\), weight \(50, 20\)\)"):
        Linear.apply(x, w)


def test_linear_bias_error():
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(5,\)"):
        Linear.apply(mg.zeros(2, 3), mg.zeros(5, 3), mg.zeros(4))
