"""Pooling: forward and gradients against PyTorch and finite differences, ties, and errors."""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from oracle import check_grad, check_op, randn, requires_torch, torch

POOLS = {"max": (MaxPool2d, "max_pool2d"), "avg": (AvgPool2d, "avg_pool2d")}

CASES = [  # input shape, kernel_size, stride, padding
    pytest.param((1, 1, 4, 4), 2, None, 0, id="stride-defaults-to-kernel"),
    pytest.param((2, 3, 7, 7), 3, 2, 0, id="overlapping-3-stride-2"),
    pytest.param((1, 2, 5, 6), 2, 1, 0, id="overlapping-2-stride-1"),
    pytest.param((2, 2, 7, 5), (3, 2), (2, 1), 0, id="non-square-pairs"),
    pytest.param((1, 2, 7, 7), 2, 3, 0, id="stride-beyond-kernel"),
    pytest.param((2, 2, 7, 7), 3, 2, 1, id="padding-1"),
    pytest.param((1, 2, 6, 6), 4, 2, 2, id="padding-2-half-kernel"),
    pytest.param((1, 2, 6, 7), (2, 3), 1, (1, 0), id="padding-pair"),
    pytest.param((2, 3, 5, 4), (5, 4), None, 0, id="kernel-is-input"),
    # 2x2 side by side (every seed network) takes MaxPool2d's maximum-of-maxima ("pairs") path
    pytest.param((2, 3, 7, 9), 2, None, 0, id="pairs-with-cropped-edges"),
    # side-by-side windows larger than 2x2 take MaxPool2d's reshape ("tiles") path
    pytest.param((2, 3, 13, 11), (3, 4), None, 0, id="tiles-with-cropped-edges"),
    pytest.param((1, 2, 35, 33), 16, None, 0, id="tiles-16x16-as-seed-001"),
]


def pool_pair(kind, kernel_size, stride, padding):
    """The node and PyTorch's pooling function with the same arguments."""
    node, torch_name = POOLS[kind]

    def mine(x):
        return node.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)

    def theirs(x):
        return getattr(torch.nn.functional, torch_name)(x, kernel_size, stride, padding)
    return mine, theirs


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding", CASES)
def test_pooling_matches_torch_and_finite_differences(kind, x_shape, kernel_size, stride, padding):
    x = randn(*x_shape, seed=1)
    mine, theirs = pool_pair(kind, kernel_size, stride, padding)
    check_op(mine, theirs, x)
    check_grad(mine, x)


@pytest.mark.parametrize("x", [
    pytest.param(np.zeros((2, 2, 6, 6)), id="all-zeros"),
    pytest.param(np.maximum(randn(2, 2, 6, 6, seed=1), 0), id="after-relu"),
    pytest.param(np.floor(randn(2, 2, 6, 6, seed=2)), id="few-levels"),
    pytest.param(-np.ones((1, 2, 5, 5)), id="negative-beside-padding"),
])
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (2, 1, 0), (3, 2, 1), (3, 1, 1), (3, None, 0)])
def test_max_pool_ties_send_the_gradient_to_the_first_maximum_like_torch(x, kernel_size, stride, padding):
    check_op(*pool_pair("max", kernel_size, stride, padding), x)


@requires_torch
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (2, 1, 0), (3, 2, 1)])
def test_max_pool_gives_a_nan_window_gradient_to_its_last_nan_like_torch(kernel_size, stride, padding):
    x = randn(2, 2, 6, 6, seed=3)
    # two NaNs in one 2x2 window, and lone NaNs at each of a window's four places
    x[0, 0, 0, 1] = x[0, 0, 1, 1] = x[1, 1, 2, 2] = x[1, 1, 0, 5] = x[1, 0, 5, 4] = x[0, 1, 3, 3] = np.nan
    mine, theirs = pool_pair("max", kernel_size, stride, padding)
    x_mg, x_torch = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out_mg, out_torch = mine(x_mg), theirs(x_torch)
    np.testing.assert_array_equal(out_mg.numpy(), out_torch.detach().numpy())  # NaN where torch has NaN
    upstream = randn(*out_mg.shape, seed=4)
    out_mg.backward(mg.tensor(upstream))
    out_torch.backward(torch.tensor(upstream))
    np.testing.assert_allclose(x_mg.grad.numpy(), x_torch.grad.numpy(), rtol=1e-12, atol=1e-12)


@requires_torch
@pytest.mark.parametrize("values", [(1.0, 3.0, 3.0, 2.0), (2.0, 2.0, 2.0, 2.0), (0.0, 1.0, 1.0, 0.0)])
def test_max_pool_2x2_windows_with_every_pattern_of_nan_like_torch(values):
    """All 16 ways to put NaN into a 2x2 window, with tied values around them: one window per image."""
    x = np.array([[[values[:2], values[2:]]]] * 16)  # (16, 1, 2, 2)
    for pattern in range(16):
        x[pattern, 0].reshape(-1)[[bool(pattern >> k & 1) for k in range(4)]] = np.nan
    x_mg, x_torch = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out_mg, out_torch = mg.nn.functional.max_pool2d(x_mg, 2), torch.nn.functional.max_pool2d(x_torch, 2)
    np.testing.assert_array_equal(out_mg.numpy(), out_torch.detach().numpy())
    out_mg.sum().backward()
    out_torch.sum().backward()
    np.testing.assert_array_equal(x_mg.grad.numpy(), x_torch.grad.numpy())


@requires_torch
@pytest.mark.parametrize("kind, kernel_size, stride, padding", [
    ("max", 2, None, 0), ("max", 3, 2, 1), ("avg", 2, None, 0), ("avg", 3, 2, 1), ("avg", (3, 2), (1, 2), (1, 0))])
def test_pooling_float32_batch_matches_torch(kind, kernel_size, stride, padding):
    x = randn(8, 3, 32, 32, seed=1).astype(np.float32)
    mine, theirs = pool_pair(kind, kernel_size, stride, padding)
    check_op(mine, theirs, x, rtol=1e-4, atol=1e-5)
    assert mine(mg.tensor(x)).dtype == mg.float32


def test_pooling_stride_defaults_to_kernel_size():
    x = mg.tensor(np.zeros((1, 1, 8, 6)))
    assert MaxPool2d.apply(x, kernel_size=2).shape == (1, 1, 4, 3)
    assert AvgPool2d.apply(x, kernel_size=(4, 3)).shape == (1, 1, 2, 2)


@pytest.mark.parametrize("x_shape", [(2, 3, 5, 4), (1, 1, 1, 1), (1, 2, 7, 3)])
@pytest.mark.parametrize("output_size", [1, (1, 1)])
def test_adaptive_avg_pool_is_a_global_average(x_shape, output_size):
    x = randn(*x_shape, seed=1)

    def mine(x):
        return AdaptiveAvgPool2d.apply(x, output_size=output_size)

    def theirs(x):
        return torch.nn.functional.adaptive_avg_pool2d(x, output_size)
    check_op(mine, theirs, x)
    check_grad(mine, x)


ERRORS = [  # node, input shape, options, error, message
    (MaxPool2d, (3, 8, 8), {"kernel_size": 2}, ValueError,
     "max_pool2d: expected input of shape (N, C, H, W), got (3, 8, 8)"),
    (AvgPool2d, (1, 1, 3, 3), {"kernel_size": 4}, ValueError,
     "avg_pool2d: kernel (4, 4) is larger than the padded input (3, 3) (input (1, 1, 3, 3)"),
    (MaxPool2d, (1, 1, 3, 4), {"kernel_size": (6, 2), "padding": 1}, ValueError,
     "max_pool2d: kernel (6, 2) is larger than the padded input (5, 6) (input (1, 1, 3, 4)"),
    (MaxPool2d, (1, 1, 4, 4), {"kernel_size": 0}, ValueError,
     "max_pool2d: kernel_size and stride must be at least 1, got kernel_size 0, stride None"),
    (AvgPool2d, (1, 1, 4, 4), {"kernel_size": 2, "stride": (1, 0)}, ValueError,
     "avg_pool2d: kernel_size and stride must be at least 1, got kernel_size 2, stride (1, 0)"),
    (MaxPool2d, (1, 1, 4, 4), {"kernel_size": 2, "padding": 2}, ValueError,
     "max_pool2d: padding 2 must be between 0 and half the kernel size (2, 2)"),
    (AvgPool2d, (1, 1, 4, 4), {"kernel_size": (2, 4), "padding": (0, 3)}, ValueError,
     "avg_pool2d: padding (0, 3) must be between 0 and half the kernel size (2, 4)"),
    (AvgPool2d, (1, 1, 4, 4), {"kernel_size": 2, "padding": -1}, ValueError,
     "avg_pool2d: padding -1 must be between 0 and half the kernel size (2, 2)"),
    (MaxPool2d, (1, 1, 4, 4), {"kernel_size": 2.5}, TypeError,
     "max_pool2d: kernel_size must be an int or a pair of ints, got 2.5"),
    (AdaptiveAvgPool2d, (1, 1, 4, 4), {"output_size": 2}, ValueError,
     "adaptive_avg_pool2d: only output_size 1 (a global average) is supported, got 2"),
    (AdaptiveAvgPool2d, (1, 1, 4, 4), {"output_size": (1, 2)}, ValueError,
     "adaptive_avg_pool2d: only output_size 1 (a global average) is supported, got (1, 2)"),
    (AdaptiveAvgPool2d, (3, 4, 4), {"output_size": 1}, ValueError,
     "adaptive_avg_pool2d: expected input of shape (N, C, H, W), got (3, 4, 4)"),
]


@pytest.mark.parametrize("node, x_shape, options, error, message", ERRORS)
def test_pooling_errors_name_the_op_and_shapes(node, x_shape, options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        node.apply(mg.tensor(np.zeros(x_shape)), **options)


@pytest.mark.parametrize("node, options", [
    (MaxPool2d, {"kernel_size": 2}), (AvgPool2d, {"kernel_size": 2}), (AdaptiveAvgPool2d, {"output_size": 1})])
def test_pooling_refuses_integer_input(node, options):
    message = "pool2d: expected a floating-point input, got int64 (input (1, 1, 4, 4))"
    with pytest.raises(TypeError, match=re.escape(message)):
        node.apply(mg.tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)), **options)
