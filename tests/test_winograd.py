"""Winograd's convolution: its transforms, and Conv2d through it against im2col, PyTorch and finite differences."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.fast import conv, winograd
from minigrad.ops.conv import Conv2d
from oracle import check_grad, check_op, randn, requires_torch, torch

pytestmark = pytest.mark.usefixtures("fast_on")  # Winograd is a fast path: test it on


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("r", [2, 3, 4, 5])
def test_one_dimensional_transforms_compute_the_correlation(m, r):
    """y = A^T [(G g) * (B^T d)] equals y_i = sum_j g_j d_(i+j), for F(m, r)."""
    a_t, g_matrix, b_t = winograd.transforms(m, r)
    n = m + r - 1
    assert a_t.shape == (m, n) and g_matrix.shape == (n, r) and b_t.shape == (n, n)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(3):
        g, d = rng.standard_normal(r), rng.standard_normal(n)
        expected = [sum(g[j] * d[i + j] for j in range(r)) for i in range(m)]
        np.testing.assert_allclose(a_t @ ((g_matrix @ g) * (b_t @ d)), expected, rtol=1e-12, atol=1e-12)


def test_too_many_points_is_a_clear_error():
    with pytest.raises(ValueError, match=r"winograd: F\(6, 5\) needs 9 points"):
        winograd.transforms(6, 5)


@pytest.fixture
def only_im2col(monkeypatch):
    monkeypatch.setattr(mg.config, "winograd", False)


CASES = [  # x shape, weight shape, padding ((top, bottom), (left, right)), tile m
    ((2, 3, 9, 7), (5, 3, 5, 5), ((2, 2), (2, 2)), 4),  # output not a multiple of the tile
    ((2, 3, 9, 7), (5, 3, 5, 5), ((2, 2), (2, 2)), 2),  # F(2x2, 5x5), the precise points, as conv uses it
    ((1, 2, 8, 11), (4, 2, 3, 5), ((1, 2), (0, 3)), 2),  # rectangular kernel, uneven padding, batch 1
    ((2, 3, 8, 11), (4, 3, 3, 3), ((0, 0), (0, 0)), 3),  # no padding
    ((3, 2, 4, 4), (2, 2, 3, 3), ((1, 1), (1, 1)), 4),  # one tile, mostly cropped
    ((2, 2, 6, 6), (3, 2, 2, 2), ((0, 1), (0, 1)), 4),  # even kernel, "same" padding
]


@pytest.mark.parametrize("x_shape, w_shape, padding, m", CASES)
def test_forward_and_backward_equal_im2col_in_float64(x_shape, w_shape, padding, m, only_im2col):
    x, weight = randn(*x_shape, seed=1), randn(*w_shape, seed=2)
    out, saved = winograd.forward(x, weight, padding, m)
    node = conv.Conv2d()
    node.padding, node.needs_input_grad = padding, (True, True)
    expected = node.forward(x, weight)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    grad = randn(*expected.shape, seed=3)
    grad_x, grad_weight = winograd.backward(grad, weight, saved, True, True)
    expected_x, expected_weight, _ = node.backward_arrays(grad)
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_weight, expected_weight, rtol=1e-10, atol=1e-12)
    only_x = winograd.backward(grad, weight, saved, True, False)
    only_weight = winograd.backward(grad, weight, saved, False, True)
    assert only_x[1] is None and only_weight[0] is None
    np.testing.assert_array_equal(only_x[0], grad_x)
    np.testing.assert_array_equal(only_weight[1], grad_weight)


def test_tile_choice():
    def tile(x_shape, w_shape, stride=(1, 1)):
        return conv.winograd_tile(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), stride)
    assert tile((64, 32, 14, 14), (64, 32, 5, 5)) == 2  # mnist_bn's second convolution: F(2x2, 5x5)
    assert tile((64, 64, 16, 16), (64, 64, 3, 3)) == 2  # cifar_bn's second: F(2x2, 3x3), not F(4x4, 3x3)
    assert tile((64, 16, 2, 2), (10, 16, 3, 3)) == 2
    assert tile((2, 16, 9, 9), (4, 16, 3, 5)) == 2  # F(2, 3) along rows, F(2, 5) along columns
    assert tile((64, 1, 28, 28), (32, 1, 5, 5)) is None  # too few channels: im2col
    assert tile((64, 32, 14, 14), (64, 32, 5, 5), stride=(2, 2)) is None
    assert tile((64, 32, 14, 14), (64, 32, 7, 7)) is None
    assert tile((64, 32, 14, 14), (64, 32, 4, 4)) is None  # F(2x2, 4x4) rounds about 3 times worse
    assert tile((64, 32, 14, 14), (64, 32, 1, 1)) is None
    x16 = np.zeros((2, 32, 14, 14), np.float16)
    assert conv.winograd_tile(x16, np.zeros((4, 32, 5, 5), np.float16), (1, 1)) is None


def test_points_of_the_precise_sets_and_of_the_sequence():
    assert winograd.points(5) == winograd.PRECISE_POINTS[5]
    assert winograd.points(3) == (0, 1, -1)
    a_t, _, _ = winograd.transforms(2, 5)  # A^T's rows are the powers of the points, then infinity's
    np.testing.assert_allclose(a_t, [[1, 1, 1, 1, 1, 0], [0, 1.5, -1.5, 2 / 3, -2 / 3, 1]])


def test_switching_winograd_off_uses_im2col(monkeypatch):
    x, weight = randn(2, 16, 6, 6, seed=1), randn(4, 16, 3, 3, seed=2)
    node = conv.Conv2d(padding=1)
    node.forward(x, weight)
    assert node.winograd_tile_size == 2
    monkeypatch.setattr(mg.config, "winograd", False)
    node = conv.Conv2d(padding=1)
    node.forward(x, weight)
    assert node.winograd_tile_size is None


@pytest.mark.parametrize("options", [{"dilation": 2}, {"groups": 2}])
def test_dilated_and_grouped_layers_take_im2col(options):
    x, weight = randn(2, 32, 9, 9, seed=1), randn(4, 32 // options.get("groups", 1), 3, 3, seed=2)
    node = conv.Conv2d(padding=1, **options)
    node.forward(x, weight)
    assert node.winograd_tile_size is None


# Conv2d cases with 16+ input channels, which the node sends through Winograd
NODE_CASES = [
    pytest.param((2, 16, 6, 5), (3, 16, 3, 3), True, 1, id="3x3-padding-1"),
    pytest.param((1, 16, 7, 7), (2, 16, 5, 5), True, "same", id="5x5-same"),
    pytest.param((2, 16, 5, 6), (2, 16, 3, 5), False, (1, 2), id="3x5-no-bias"),
]


@pytest.mark.parametrize("x_shape, w_shape, with_bias, padding", NODE_CASES)
def test_conv2d_through_winograd_matches_torch_and_finite_differences(x_shape, w_shape, with_bias, padding):
    arrays = [randn(*x_shape, seed=1), randn(*w_shape, seed=2)] + ([randn(w_shape[0], seed=3)] if with_bias else [])

    def mine(x, weight, bias=None):
        node_out = Conv2d.apply(x, weight, bias, padding=padding)
        if node_out.grad_fn is not None:  # (gradcheck's perturbed runs record no graph)
            assert node_out.grad_fn.winograd_tile_size is not None  # the case does go through Winograd
        return node_out

    def theirs(x, weight, bias=None):
        return torch.nn.functional.conv2d(x, weight, bias, padding=padding)
    check_op(mine, theirs, *arrays)
    check_grad(mine, *arrays)


@requires_torch
def test_float32_mnist_bn_second_convolution_matches_torch():
    """F(2x2, 5x5) in float32 stays within 1e-5 of the output's scale (measured: about 1e-6)."""
    x = randn(8, 32, 14, 14, seed=1).astype(np.float32)
    weight = (0.1 * randn(64, 32, 5, 5, seed=2)).astype(np.float32)
    bias = randn(64, seed=3).astype(np.float32)
    grad = randn(8, 64, 14, 14, seed=4).astype(np.float32)
    mine = [mg.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    out = Conv2d.apply(*mine, padding=2)
    assert out.grad_fn.winograd_tile_size == 2
    out.backward(mg.tensor(grad))
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    expected = torch.nn.functional.conv2d(*theirs, padding=2)
    expected.backward(torch.tensor(grad))
    for got, want in [(out, expected)] + list(zip(mine, theirs)):
        got = got.numpy() if got is out else got.grad.numpy()
        want = want.detach().numpy() if want is expected else want.grad.numpy()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


def test_saved_transforms_are_freed_after_backward():
    x = mg.tensor(randn(2, 16, 6, 6, seed=1), requires_grad=True)
    weight = mg.tensor(randn(4, 16, 3, 3, seed=2), requires_grad=True)
    out = Conv2d.apply(x, weight, None, padding=1)
    node = out.grad_fn
    out.sum().backward()
    assert node.saved is None
