"""The textbook backward rules of Conv2d and pooling: equal to the fast rules, and differentiable again.

For each op: (1) first-order gradients by the textbook rule (``mg.config.textbook()``)
equal those of the fast array rule on the same graph, and pass ``gradcheck``; (2) second
derivatives, g = d sum(v f)/d inputs with create_graph and then d sum(u g)/d (inputs, v),
equal PyTorch's, and a third derivative for the convolution; (3) ``gradgradcheck``.
"""
import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.ops.common import Dilate2d
from minigrad.ops.conv import Conv2d
from oracle import randn, requires_torch, torch

CONV_CASES = [  # input shape, weight shape, bias?, stride, padding, dilation, groups
    pytest.param((2, 3, 6, 5), (4, 3, 3, 3), True, 1, 0, 1, 1, id="plain"),
    pytest.param((2, 2, 7, 6), (3, 2, 3, 2), True, 2, 1, 1, 1, id="stride-2-padding-1"),
    # windows that do not reach the last rows: the weight gradient's convolution is cropped
    pytest.param((1, 2, 8, 9), (2, 2, 3, 3), True, (3, 2), 0, 1, 1, id="stride-leaves-rows"),
    pytest.param((1, 2, 5, 5), (2, 2, 2, 2), False, 3, 4, 1, 1, id="padding-beyond-the-window"),
    pytest.param((2, 2, 6, 7), (2, 2, 2, 3), True, 1, "same", 1, 1, id="same-even-kernel"),
    pytest.param((1, 2, 9, 8), (3, 2, 3, 2), True, (2, 1), (1, 2), (2, 3), 1, id="dilation-stride-padding"),
    pytest.param((2, 4, 7, 7), (6, 2, 3, 3), True, 2, 3, 2, 2, id="groups-2-dilation-stride"),
    pytest.param((1, 3, 7, 6), (6, 1, 3, 3), False, 1, "same", 1, 3, id="depthwise-multiplier-2"),
    # 36 values per column: the single-product route, not the per-image one
    pytest.param((2, 4, 6, 6), (3, 4, 3, 3), True, 1, 1, 1, 1, id="long-columns"),
]
# 16 channels, 3x3, stride 1: the fast route is Winograd, whose transforms round differently
WINOGRAD_CASE = ((1, 16, 6, 6), (2, 16, 3, 3), True, 1, 1, 1, 1)

POOL_CASES = [  # node, options
    pytest.param(F.max_pool2d, {"kernel_size": 2}, id="max-pairs"),
    pytest.param(F.max_pool2d, {"kernel_size": (3, 2)}, id="max-tiles"),
    pytest.param(F.max_pool2d, {"kernel_size": 3, "stride": 2, "padding": 1}, id="max-overlapping-padding"),
    pytest.param(F.max_pool2d, {"kernel_size": (2, 3), "stride": 1}, id="max-stride-1"),
    pytest.param(F.avg_pool2d, {"kernel_size": 2}, id="avg-side-by-side"),
    pytest.param(F.avg_pool2d, {"kernel_size": 3, "stride": 2, "padding": 1}, id="avg-overlapping-padding"),
    pytest.param(F.adaptive_avg_pool2d, {"output_size": 1}, id="adaptive-avg"),
]
POOL_SHAPE = (2, 2, 7, 6)


def conv_arrays(x_shape, weight_shape, with_bias):
    arrays = [randn(*x_shape, seed=1), randn(*weight_shape, seed=2)]
    return arrays + [randn(weight_shape[0], seed=3)] * with_bias


def conv_fns(stride, padding, dilation, groups):
    """``F.conv2d`` and PyTorch's conv2d with the same settings."""
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return (lambda *t: F.conv2d(*t, **options)), (lambda *t: torch.nn.functional.conv2d(*t, **options))


def pool_fns(node, options):
    """The pooling function and PyTorch's, with the same settings."""
    return (lambda x: node(x, **options)), (lambda x: getattr(torch.nn.functional, node.__name__)(x, **options))


def first_order(fn, arrays, textbook):
    """The gradients of sum(v * fn(inputs)), by the fast rules or the textbook ones."""
    inputs = [mg.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    v = mg.tensor(randn(*out.shape, seed=4))
    if textbook:
        with mg.config.textbook():
            out.backward(v)
    else:
        out.backward(v)
    return [t.grad.numpy() for t in inputs]


def assert_equal_gradients(fast, textbook, rtol=1e-12):
    for number, (a, b) in enumerate(zip(fast, textbook)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max(),
                                   err_msg=f"gradient of input {number}")


def second_derivatives(fn, arrays, framework, device="cpu"):
    """d sum(u_i g_i)/d (inputs, v), where g = d sum(v * fn(inputs))/d inputs with a graph: minigrad or torch.

    ``v`` is a leaf too, so the derivative with respect to the output
    gradient (a linear rule's only second derivative) is checked as well.
    """
    out_shape = fn[0](*[mg.tensor(a) for a in arrays]).shape
    v_array = randn(*out_shape, seed=5)
    us = [randn(*a.shape, seed=6 + k) for k, a in enumerate(arrays)]
    if framework == "torch":
        inputs = [torch.tensor(a, requires_grad=True) for a in arrays + [v_array]]
        grads = torch.autograd.grad((inputs[-1] * fn[1](*inputs[:-1])).sum(), inputs[:-1], create_graph=True)
        total = sum((g * torch.tensor(u)).sum() for g, u in zip(grads, us))
        second = torch.autograd.grad(total, inputs, allow_unused=True)
        return [np.zeros(t.shape) if s is None else s.detach().numpy() for s, t in zip(second, inputs)]
    inputs = [mg.tensor(a, device=device, requires_grad=True) for a in arrays + [v_array]]
    grads = mg.autograd.grad((inputs[-1] * fn[0](*inputs[:-1])).sum(), inputs[:-1], create_graph=True)
    total = sum((g * mg.tensor(u, device=device)).sum() for g, u in zip(grads, us))
    second = mg.autograd.grad(total, inputs, allow_unused=True)
    return [np.zeros(t.shape) if s is None else s.numpy() for s, t in zip(second, inputs)]


def assert_close(mine, theirs, rtol=1e-10):
    for number, (a, b) in enumerate(zip(mine, theirs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()),
                                   err_msg=f"second derivative with respect to input {number}")


# ----- (1) first order: the textbook rule equals the fast one, and finite differences --------

@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, weight_shape, with_bias, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d_textbook_gradients_equal_the_fast_ones(x_shape, weight_shape, with_bias, stride, padding,
                                                       dilation, groups):
    fn, _ = conv_fns(stride, padding, dilation, groups)
    arrays = conv_arrays(x_shape, weight_shape, with_bias)
    assert_equal_gradients(first_order(fn, arrays, False), first_order(fn, arrays, True))
    with mg.config.textbook():
        assert mg.utils.gradcheck(fn, *[mg.tensor(a, requires_grad=True) for a in arrays])


def test_conv2d_textbook_gradients_equal_winograds():
    """Winograd's transforms add and subtract before multiplying: equal to rounding, not to the last bit."""
    x_shape, weight_shape, with_bias, stride, padding, dilation, groups = WINOGRAD_CASE
    fn, _ = conv_fns(stride, padding, dilation, groups)
    arrays = conv_arrays(x_shape, weight_shape, with_bias)
    assert_equal_gradients(first_order(fn, arrays, False), first_order(fn, arrays, True), rtol=1e-10)


@pytest.mark.parametrize("node, options", POOL_CASES)
def test_pooling_textbook_gradients_equal_the_fast_ones(node, options):
    fn, _ = pool_fns(node, options)
    arrays = [randn(*POOL_SHAPE, seed=1)]
    # the same terms summed in the same order: equal to the last bit
    assert_equal_gradients(first_order(fn, arrays, False), first_order(fn, arrays, True), rtol=0)
    with mg.config.textbook():
        assert mg.utils.gradcheck(fn, mg.tensor(arrays[0], requires_grad=True))


def test_max_pool_textbook_rule_sends_ties_and_nan_where_the_fast_rule_does():
    """The winners are forward's, whatever route found them: first maximum of a tie, last NaN of a window."""
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 4, 5] = np.nan
    for options in ({"kernel_size": 2}, {"kernel_size": 3}, {"kernel_size": 3, "stride": 2, "padding": 1}):
        fn, _ = pool_fns(F.max_pool2d, options)
        assert_equal_gradients(first_order(fn, [x], False), first_order(fn, [x], True), rtol=0)


def test_dilate2d_spreads_and_pads_and_its_gradient_is_the_strided_slice():
    x = randn(2, 1, 3, 2, seed=1)
    out = Dilate2d.apply(mg.tensor(x), stride=(2, 3), offset=(1, 2), size=(7, 8))
    expected = np.zeros((2, 1, 7, 8))
    expected[:, :, 1:6:2, 2:6:3] = x
    np.testing.assert_array_equal(out.numpy(), expected)

    def spread(t):
        return Dilate2d.apply(t, stride=(2, 3), offset=(1, 2), size=(7, 8))
    assert mg.utils.gradcheck(spread, mg.tensor(x, requires_grad=True))
    assert mg.utils.gradgradcheck(lambda t: spread(t) * spread(t), mg.tensor(x, requires_grad=True))


# ----- (2) second and third derivatives against PyTorch ---------------------------------------

@requires_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, weight_shape, with_bias, stride, padding, dilation, groups",
                         CONV_CASES + [pytest.param(*WINOGRAD_CASE, id="winograd-sized")])
def test_conv2d_second_derivatives_match_torch(x_shape, weight_shape, with_bias, stride, padding, dilation, groups):
    fns = conv_fns(stride, padding, dilation, groups)
    arrays = conv_arrays(x_shape, weight_shape, with_bias)
    assert_close(second_derivatives(fns, arrays, "minigrad"), second_derivatives(fns, arrays, "torch"))


@requires_torch
@pytest.mark.parametrize("node, options", POOL_CASES)
def test_pooling_second_derivatives_match_torch(node, options):
    """Of pool(x) itself (only d/dv is not zero) and of pool(x * x), whose rule meets the product's."""
    arrays = [randn(*POOL_SHAPE, seed=1)]
    mine, theirs = pool_fns(node, options)
    assert_close(second_derivatives((mine, theirs), arrays, "minigrad"),
                 second_derivatives((mine, theirs), arrays, "torch"))
    squared = (lambda x: mine(x * x)), (lambda x: theirs(x * x))
    assert_close(second_derivatives(squared, arrays, "minigrad"), second_derivatives(squared, arrays, "torch"))


@requires_torch
def test_conv2d_third_derivative_matches_torch():
    """sum(v * conv(x, W)) is trilinear in (v, x, W): d/dv of d/dW of d/dx goes through three levels of the rule."""
    arrays = [randn(2, 4, 7, 6, seed=1), randn(4, 2, 3, 2, seed=2), randn(2, 4, 4, 3, seed=3)]
    u, t = randn(2, 4, 7, 6, seed=4), randn(4, 2, 3, 2, seed=5)
    options = {"stride": 2, "padding": 1, "dilation": (1, 2), "groups": 2}

    def third(conv, grad, leaf, constant):
        x, weight, v = [leaf(a) for a in arrays]
        g_x, = grad((v * conv(x, weight, **options)).sum(), [x], create_graph=True)
        g_xw, = grad((g_x * constant(u)).sum(), [weight], create_graph=True)
        return grad((g_xw * constant(t)).sum(), [v])[0]
    mine = third(F.conv2d, mg.autograd.grad, lambda a: mg.tensor(a, requires_grad=True), mg.tensor)
    theirs = third(torch.nn.functional.conv2d, torch.autograd.grad,
                   lambda a: torch.tensor(a, requires_grad=True), torch.tensor)
    assert_close([mine.numpy()], [theirs.numpy()])
    assert np.abs(theirs.numpy()).max() > 1  # a third derivative that is not zero


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "textbook"])
def test_the_rules_convolutions_are_the_chosen_conv2d(monkeypatch, fast):
    """The rule's own convolutions are Conv2d nodes of whichever version ``config.chosen`` gives.

    With the fast paths on that is the drop-in, on its fast routes (its first
    order is held equal to the rule by tests/test_fast_conv_pool.py); off,
    the textbook rule all the way down.
    """
    monkeypatch.setattr(mg.config, "fast", fast)
    x_shape, weight_shape, *_ = WINOGRAD_CASE
    x, weight = [mg.tensor(a, requires_grad=True) for a in conv_arrays(x_shape, weight_shape, False)]
    out = F.conv2d(x, weight, padding=1)
    grad_x, grad_weight = mg.autograd.grad(out.sum(), [x, weight], create_graph=True)
    nodes, stack = [], [grad_x.grad_fn, grad_weight.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node is out.grad_fn:
            continue
        if isinstance(node, Conv2d):
            nodes.append(node)
        stack.extend(t.grad_fn for t in node.inputs if t is not None)
    assert len(nodes) == 2 and all(type(n) is mg.config.chosen(Conv2d) for n in nodes + [out.grad_fn])
    if fast:  # the layer takes Winograd; dL/dx's convolution (2 input channels) the per-image products
        assert out.grad_fn.winograd_tile_size and any(n.per_image for n in nodes)
    else:
        assert type(out.grad_fn) is Conv2d


# ----- (3) gradgradcheck -----------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", ["stride-2-padding-1", "same-even-kernel", "groups-2-dilation-stride",
                                  "padding-beyond-the-window"])
def test_conv2d_gradgradcheck(case):
    x_shape, weight_shape, with_bias, stride, padding, dilation, groups = next(
        param.values for param in CONV_CASES if param.id == case)
    fn, _ = conv_fns(stride, padding, dilation, groups)
    # small inputs: every element costs two first-order passes
    x_shape = x_shape[:2] + tuple(min(side, 6) for side in x_shape[2:])
    inputs = [mg.tensor(a, requires_grad=True) for a in conv_arrays(x_shape, weight_shape, with_bias)]
    assert mg.utils.gradgradcheck(lambda *t: fn(*t) * fn(*t), *inputs)
    assert mg.utils.gradgradcheck(fn, *inputs)


@pytest.mark.parametrize("node, options", POOL_CASES)
def test_pooling_gradgradcheck(node, options):
    fn, _ = pool_fns(node, options)
    x = mg.tensor(randn(*POOL_SHAPE, seed=1), requires_grad=True)
    assert mg.utils.gradgradcheck(lambda t: fn(t * t), x)
    assert mg.utils.gradgradcheck(fn, x)


def test_gradgradcheck_catches_a_wrong_second_derivative(monkeypatch):
    """Right values, wrong graph (dL/dW cut off from x): gradcheck passes, gradgradcheck does not."""
    from minigrad.ops.common import constant
    from minigrad.utils.gradcheck import GradcheckError
    textbook = Conv2d.backward

    def cut_off(self, grad):
        grad_x, grad_weight, grad_bias = textbook(self, grad)
        return grad_x, constant(grad_weight.data), grad_bias
    monkeypatch.setattr(Conv2d, "backward", cut_off)
    inputs = [mg.tensor(a, requires_grad=True) for a in conv_arrays((1, 2, 5, 5), (2, 2, 3, 3), False)]
    with mg.config.textbook():
        assert mg.utils.gradcheck(lambda *t: F.conv2d(*t, padding=1), *inputs)
    # d/dx of sum(u_W dL/dW) is lost
    with pytest.raises(GradcheckError, match=r"gradgradcheck: input 0 \(shape \(1, 2, 5, 5\)\)"):
        mg.utils.gradgradcheck(lambda *t: F.conv2d(*t, padding=1), *inputs)


# ----- the GPU path ------------------------------------------------------------------------------

@requires_torch
def test_second_derivatives_on_the_gpu_equal_the_cpu(cupy):
    conv = conv_fns(2, 1, 2, 2)
    arrays = conv_arrays((2, 4, 7, 7), (4, 2, 3, 3), True)
    assert_close(second_derivatives(conv, arrays, "minigrad", device="cuda"),
                 second_derivatives(conv, arrays, "minigrad"))
    for node, options in ((F.max_pool2d, {"kernel_size": 3, "stride": 2, "padding": 1}),
                          (F.max_pool2d, {"kernel_size": 2}), (F.avg_pool2d, {"kernel_size": 2}),
                          (F.adaptive_avg_pool2d, {"output_size": 1})):
        mine, theirs = pool_fns(node, options)
        squared = (lambda x: mine(x * x)), (lambda x: theirs(x * x))
        arrays = [randn(*POOL_SHAPE, seed=1)]
        assert_close(second_derivatives(squared, arrays, "minigrad", device="cuda"),
                     second_derivatives(squared, arrays, "minigrad"))
