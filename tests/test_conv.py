"""Conv2d: forward and gradients against PyTorch and finite differences, and its errors."""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.conv import Conv2d, col2im, im2col
from oracle import check_grad, check_op, randn, requires_torch, torch

CASES = [  # input shape, weight shape, bias?, stride, padding
    pytest.param((1, 1, 5, 5), (1, 1, 3, 3), True, 1, 0, id="batch-1"),
    pytest.param((2, 3, 7, 7), (4, 3, 3, 3), True, 1, 0, id="batch-2-channels"),
    pytest.param((2, 2, 7, 5), (3, 2, 3, 2), True, 1, 0, id="odd-non-square"),
    pytest.param((1, 1, 4, 4), (2, 1, 1, 1), True, 1, 0, id="kernel-1x1"),
    pytest.param((1, 2, 7, 7), (2, 2, 3, 3), True, 2, 0, id="stride-2"),
    pytest.param((2, 2, 7, 6), (3, 2, 3, 3), True, (2, 1), 0, id="stride-pair"),
    pytest.param((1, 1, 7, 7), (1, 1, 2, 2), True, 3, 0, id="stride-beyond-kernel"),
    pytest.param((2, 2, 5, 5), (3, 2, 3, 3), True, 1, 1, id="padding-1"),
    pytest.param((1, 2, 4, 5), (2, 2, 3, 3), True, 2, 2, id="padding-2-stride-2"),
    pytest.param((1, 2, 5, 6), (2, 2, 3, 2), True, (1, 2), (2, 1), id="padding-pair"),
    pytest.param((2, 2, 5, 6), (3, 2, 3, 3), True, 1, "same", id="same-odd-kernel"),
    pytest.param((1, 2, 5, 6), (2, 2, 2, 2), True, 1, "same", id="same-even-kernel"),
    pytest.param((1, 2, 6, 5), (2, 2, 4, 3), True, 1, "same", id="same-mixed-kernel"),
    pytest.param((2, 2, 6, 5), (3, 2, 3, 2), True, 1, "valid", id="valid"),
    pytest.param((2, 3, 6, 6), (2, 3, 3, 3), False, 1, 1, id="no-bias"),
    pytest.param((2, 3, 5, 4), (2, 3, 5, 4), True, 1, 0, id="kernel-is-input"),
    # more than 32 values per column: one product for the whole batch instead of one per image
    pytest.param((2, 4, 7, 6), (3, 4, 3, 3), True, 1, 1, id="long-columns"),
    pytest.param((1, 5, 8, 7), (2, 5, 3, 3), True, 2, (1, 0), id="long-columns-stride-2"),
    pytest.param((2, 9, 5, 5), (2, 9, 2, 2), False, 1, "same", id="long-columns-even-kernel"),
]


def conv_pair(stride, padding):
    """The node and PyTorch's conv2d with the same arguments."""
    def mine(x, weight, bias=None):
        return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)

    def theirs(x, weight, bias=None):
        return torch.nn.functional.conv2d(x, weight, bias, stride=stride, padding=padding)
    return mine, theirs


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, weight_shape, with_bias, stride, padding", CASES)
def test_conv2d_matches_torch_and_finite_differences(x_shape, weight_shape, with_bias, stride, padding):
    arrays = [randn(*x_shape, seed=1), randn(*weight_shape, seed=2)]
    if with_bias:
        arrays.append(randn(weight_shape[0], seed=3))
    mine, theirs = conv_pair(stride, padding)
    check_op(mine, theirs, *arrays)
    check_grad(mine, *arrays)


@requires_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("weight_shape, stride, padding", [
    ((16, 3, 5, 5), 1, 2), ((8, 3, 3, 3), 2, 1), ((4, 3, 4, 4), 1, "same"), ((8, 3, 3, 5), (1, 2), (0, 1))])
def test_conv2d_float32_batch_matches_torch(weight_shape, stride, padding):
    x = randn(8, 3, 32, 32, seed=1).astype(np.float32)
    weight = (0.2 * randn(*weight_shape, seed=2)).astype(np.float32)
    bias = randn(weight_shape[0], seed=3).astype(np.float32)
    mine, theirs = conv_pair(stride, padding)
    out = mine(mg.tensor(x), mg.tensor(weight), mg.tensor(bias))
    expected = theirs(torch.tensor(x), torch.tensor(weight), torch.tensor(bias))
    assert out.dtype == mg.float32
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    # a gradient sums up to 8 * 32 * 32 float32 products, so it is only good to ~1e-4 absolute
    check_op(mine, theirs, x, weight, bias, rtol=1e-4, atol=1e-3)


@requires_torch
def test_conv2d_weight_gradient_alone_when_input_needs_none():
    x, weight = randn(2, 3, 6, 6, seed=1), randn(4, 3, 3, 3, seed=2)
    mine = mg.tensor(weight, requires_grad=True)
    theirs = torch.tensor(weight, requires_grad=True)
    Conv2d.apply(mg.tensor(x), mine, padding=1).sum().backward()
    torch.nn.functional.conv2d(torch.tensor(x), theirs, padding=1).sum().backward()
    np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10)


@requires_torch
@pytest.mark.parametrize("x_shape, weight_shape", [
    pytest.param((2, 3, 6, 6), (4, 3, 3, 3), id="by-image-bias-in-the-product"),  # C kH kW = 27
    pytest.param((2, 16, 6, 6), (4, 16, 3, 3), id="winograd-bias-in-the-transform"),
    pytest.param((2, 4, 6, 6), (4, 4, 3, 3), id="one-product"),  # C kH kW = 36
])
@pytest.mark.parametrize("wanted", ["weight", "bias", "input"])
def test_conv2d_one_gradient_alone(x_shape, weight_shape, wanted):
    # each route folds or computes the bias differently; each gradient must come alone, right
    arrays = {"input": randn(*x_shape, seed=1), "weight": randn(*weight_shape, seed=2),
              "bias": randn(weight_shape[0], seed=3)}
    mine = {k: mg.tensor(a, requires_grad=k == wanted) for k, a in arrays.items()}
    theirs = {k: torch.tensor(a, requires_grad=k == wanted) for k, a in arrays.items()}
    out = Conv2d.apply(mine["input"], mine["weight"], mine["bias"], padding=1)
    expected = torch.nn.functional.conv2d(theirs["input"], theirs["weight"], theirs["bias"], padding=1)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = randn(*out.shape, seed=4)
    out.backward(mg.tensor(upstream))
    expected.backward(torch.tensor(upstream))
    np.testing.assert_allclose(mine[wanted].grad.numpy(), theirs[wanted].grad.numpy(), rtol=1e-10, atol=1e-12)
    assert all(mine[k].grad is None for k in arrays if k != wanted)


@pytest.mark.parametrize("batch_first", [False, True])
def test_col2im_is_the_adjoint_of_im2col(batch_first):
    # <im2col(x), c> = <x, col2im(c)>: why col2im is the backward of the copy
    x = randn(2, 3, 6, 5, seed=1)
    kernel_size, stride, padding = (3, 2), (2, 1), ((1, 2), (0, 1))
    cols = im2col(x, kernel_size, stride, padding, batch_first)
    c = randn(*cols.shape, seed=2)
    assert np.isclose((cols * c).sum(), (x * col2im(c, x.shape, stride, padding, batch_first)).sum())


def test_both_column_layouts_hold_the_same_windows():
    x = randn(3, 2, 7, 6, seed=1)
    kernel_size, stride, padding = (3, 2), (2, 1), ((1, 2), (0, 1))
    by_channel = im2col(x, kernel_size, stride, padding)  # (C, kH, kW, N, Ho, Wo)
    by_image = im2col(x, kernel_size, stride, padding, batch_first=True)  # (N, C, kH, kW, Ho, Wo)
    np.testing.assert_array_equal(by_image, by_channel.transpose(3, 0, 1, 2, 4, 5))
    c = randn(*by_image.shape, seed=2)
    np.testing.assert_allclose(col2im(c, x.shape, stride, padding, batch_first=True),
                               col2im(np.ascontiguousarray(c.transpose(1, 2, 3, 0, 4, 5)), x.shape, stride, padding),
                               rtol=1e-12)


def zeros(*shape, dtype=np.float64):
    return mg.tensor(np.zeros(shape, dtype=dtype))


SHAPE_ERRORS = [  # input shape, weight shape, bias shape, options, error, message
    ((64, 3, 28, 28), (32, 1, 5, 5), None, {}, ValueError,
     "conv2d: input has 3 channels but weight expects 1 (input (64, 3, 28, 28), weight (32, 1, 5, 5))"),
    ((3, 28, 28), (32, 3, 5, 5), None, {}, ValueError,
     "conv2d: expected input of shape (N, C, H, W), got (3, 28, 28)"),
    ((1, 3, 8, 8), (3, 5, 5), None, {}, ValueError,
     "conv2d: expected weight of shape (out_channels, in_channels, kH, kW), got (3, 5, 5) (input (1, 3, 8, 8))"),
    ((1, 3, 8, 8), (4, 3, 3, 3), (3,), {}, ValueError,
     "conv2d: bias must have shape (4,) to match weight (4, 3, 3, 3), got (3,)"),
    ((1, 1, 3, 3), (1, 1, 5, 5), None, {}, ValueError,
     "conv2d: kernel (5, 5) is larger than the padded input (3, 3) (input (1, 1, 3, 3)"),
    ((1, 1, 3, 4), (1, 1, 6, 2), None, {"padding": 1}, ValueError,
     "conv2d: kernel (6, 2) is larger than the padded input (5, 6) (input (1, 1, 3, 4)"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"stride": 0}, ValueError, "conv2d: stride must be at least 1, got 0"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"stride": (1, 0)}, ValueError, "conv2d: stride must be at least 1"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"stride": 1.5}, TypeError,
     "conv2d: stride must be an int or a pair of ints, got 1.5"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"padding": -1}, ValueError, "conv2d: padding must not be negative"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"padding": (1, 2, 3)}, TypeError,
     "conv2d: padding must be an int or a pair of ints"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"padding": "full"}, ValueError,
     "conv2d: padding must be an int, a pair, 'same' or 'valid', got 'full'"),
    ((1, 1, 5, 5), (1, 1, 3, 3), None, {"padding": "same", "stride": 2}, ValueError,
     "conv2d: padding='same' is not supported for strided convolutions (stride (2, 2))"),
]


@pytest.mark.parametrize("x_shape, weight_shape, bias_shape, options, error, message", SHAPE_ERRORS)
def test_conv2d_errors_name_the_op_and_shapes(x_shape, weight_shape, bias_shape, options, error, message):
    bias = None if bias_shape is None else zeros(*bias_shape)
    with pytest.raises(error, match=re.escape(message)):
        Conv2d.apply(zeros(*x_shape), zeros(*weight_shape), bias, **options)


def test_conv2d_refuses_mixed_dtypes():
    message = "conv2d: inputs must have one dtype, got input float32, weight float64"
    with pytest.raises(TypeError, match=re.escape(message)):
        Conv2d.apply(zeros(1, 1, 5, 5, dtype=np.float32), zeros(1, 1, 3, 3))
    message = "conv2d: inputs must have one dtype, got input float64, weight float64, bias float32"
    with pytest.raises(TypeError, match=re.escape(message)):
        Conv2d.apply(zeros(1, 1, 5, 5), zeros(1, 1, 3, 3), zeros(1, dtype=np.float32))
