"""The fast Conv2d and pooling drop-ins (minigrad/fast/conv.py, pool.py) equal their textbook rules, route by route.

For every route of each fast forward, the output and the first-order
gradients of every input with the fast paths on equal those computed wholly
under ``mg.config.textbook()``, and so do the gradients of a graph made with
the fast paths on and differentiated under ``textbook()`` (the inherited
textbook rule reading what the fast forward left). The type of the output's
node shows which version ran, so no test compares a path with itself.
"""
import contextlib

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.fast import conv as fast_conv
from minigrad.fast import pool as fast_pool
from minigrad.ops import conv, pool
from oracle import randn, requires_torch, torch

COVERS = {conv.Conv2d, pool.MaxPool2d, pool.AvgPool2d, pool.AdaptiveAvgPool2d}

pytestmark = pytest.mark.usefixtures("fast_on")


def run(fn, arrays, device="cpu", textbook_backward=False):
    """The node, the output and every input's gradient of sum(v * fn(inputs)), as NumPy arrays."""
    inputs = [mg.tensor(a, device=device, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    v = mg.tensor(randn(*out.shape, seed=9).astype(arrays[0].dtype), device=device)
    if textbook_backward:
        with mg.config.textbook():
            out.backward(v)
    else:
        out.backward(v)
    return out.grad_fn, [out.numpy()] + [t.grad.numpy() for t in inputs]


def assert_results_equal(got, expected, rtol, what):
    for number, (a, b) in enumerate(zip(got, expected)):
        name = "the output" if number == 0 else f"the gradient of input {number - 1}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.nanmax(np.abs(b), initial=1.0),
                                   err_msg=f"{what}: {name}")


def assert_drop_in_equals_textbook(fn, arrays, rule, rtol, device="cpu"):
    """Fast on, fast forward then textbook backward, and textbook only: equal results; returns the fast node."""
    node, fast = run(fn, arrays, device)
    assert type(node) is mg.config.drop_ins[rule] and type(node) is not rule
    mixed_node, mixed = run(fn, arrays, device, textbook_backward=True)
    assert type(mixed_node) is mg.config.drop_ins[rule]
    with mg.config.textbook():
        textbook_node, textbook = run(fn, arrays, device)
    assert type(textbook_node) is rule
    assert_results_equal(fast, textbook, rtol, "fast against textbook")
    assert_results_equal(mixed, textbook, rtol, "fast forward, textbook backward against textbook")
    return node


def test_the_drop_ins_are_registered():
    assert mg.config.drop_ins[conv.Conv2d] is fast_conv.Conv2d
    assert mg.config.drop_ins[pool.MaxPool2d] is fast_pool.MaxPool2d
    assert mg.config.drop_ins[pool.AvgPool2d] is fast_pool.AvgPool2d
    assert mg.config.drop_ins[pool.AdaptiveAvgPool2d] is fast_pool.AdaptiveAvgPool2d
    assert all(fast.__name__ == rule.__name__ for rule, fast in mg.config.drop_ins.items()
               if rule in COVERS)  # messages and graph pictures name the op the same


# ----- Conv2d ------------------------------------------------------------------------------------

CONV_CASES = [  # input shape, weight shape, bias?, stride, padding, dilation, groups, route
    pytest.param((2, 16, 6, 5), (3, 16, 3, 3), True, 1, 1, 1, 1, "winograd", id="winograd-3x3"),
    pytest.param((1, 16, 7, 7), (2, 16, 5, 5), True, 1, "same", 1, 1, "winograd", id="winograd-5x5-same"),
    pytest.param((2, 17, 5, 6), (2, 17, 3, 5), False, 1, (1, 2), 1, 1, "winograd", id="winograd-3x5-no-bias"),
    pytest.param((2, 3, 7, 7), (4, 3, 3, 3), True, 1, 1, 1, 1, "per_image", id="per-image"),
    pytest.param((2, 2, 9, 8), (3, 2, 3, 3), True, 2, 1, 2, 1, "per_image", id="per-image-stride-dilation"),
    pytest.param((2, 1, 8, 8), (4, 1, 5, 5), False, 1, "same", 1, 1, "per_image", id="per-image-no-bias"),
    pytest.param((2, 4, 7, 6), (3, 4, 3, 3), True, 1, 1, 1, 1, "product", id="product-long-columns"),
    pytest.param((2, 16, 7, 7), (4, 16, 3, 3), True, 2, 1, 1, 1, "product", id="product-strided-16-channels"),
    pytest.param((1, 16, 8, 8), (2, 16, 3, 3), True, 1, 1, 2, 1, "product", id="product-dilated-16-channels"),
    pytest.param((2, 5, 9, 9), (3, 5, 3, 3), True, (1, 2), 1, (2, 1), 1, "product", id="product-dilated-strided"),
    pytest.param((2, 4, 7, 6), (6, 2, 3, 3), True, 1, 1, 1, 2, "product", id="product-groups-2"),
    pytest.param((1, 32, 6, 6), (4, 16, 3, 3), False, 1, 1, 1, 2, "product", id="product-groups-not-winograd"),
    pytest.param((2, 3, 7, 7), (3, 1, 3, 3), True, 1, 1, 1, 3, "product", id="product-depthwise"),
    pytest.param((1, 6, 11, 9), (6, 3, 3, 2), True, (2, 1), (1, 2), (2, 1), 2, "product",
                 id="product-groups-dilation-stride"),
]


def conv_route(node):
    return "winograd" if node.winograd_tile_size else "per_image" if node.per_image else "product"


def conv_case(x_shape, weight_shape, with_bias, stride, padding, dilation, groups, dtype=np.float64):
    arrays = [randn(*x_shape, seed=1), randn(*weight_shape, seed=2)] + [randn(weight_shape[0], seed=3)] * with_bias
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return (lambda *t: F.conv2d(*t, **options)), [a.astype(dtype) for a in arrays]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, weight_shape, with_bias, stride, padding, dilation, groups, route", CONV_CASES)
def test_conv2d_drop_in_equals_the_textbook_rule(x_shape, weight_shape, with_bias, stride, padding, dilation,
                                                 groups, route):
    """float64: the routes sum the same products in other orders (Winograd: through its transforms)."""
    fn, arrays = conv_case(x_shape, weight_shape, with_bias, stride, padding, dilation, groups)
    # Winograd's transforms add and subtract before they multiply: equal to rounding, about 1e-15 of the scale
    rtol = 1e-11 if route == "winograd" else 1e-12
    node = assert_drop_in_equals_textbook(fn, arrays, conv.Conv2d, rtol)
    assert conv_route(node) == route


@pytest.mark.parametrize("case", ["winograd-3x3", "winograd-5x5-same", "per-image", "product-groups-2",
                                  "product-dilated-strided"])
def test_conv2d_drop_in_equals_the_textbook_rule_in_float32(case):
    """float32: within 1e-5 of the scale (the sums hold up to a few hundred float32 products each)."""
    *params, route = next(param.values for param in CONV_CASES if param.id == case)
    fn, arrays = conv_case(*params, dtype=np.float32)
    node = assert_drop_in_equals_textbook(fn, arrays, conv.Conv2d, rtol=1e-5)
    assert conv_route(node) == route


@pytest.mark.parametrize("case", ["per-image", "product-long-columns", "product-groups-2", "product-depthwise",
                                  "product-dilated-strided", "product-groups-dilation-stride", "winograd-3x3"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_drop_in_on_the_gpu_equals_the_textbook_rule(cupy, case, dtype):
    """On the GPU every layer takes the single product: the fused im2col/col2im kernels, slices where dilated."""
    *params, _ = next(param.values for param in CONV_CASES if param.id == case)
    fn, arrays = conv_case(*params, dtype=dtype)
    node = assert_drop_in_equals_textbook(fn, arrays, conv.Conv2d, 1e-12 if dtype == np.float64 else 1e-5,
                                          device="cuda")
    assert conv_route(node) == "product"


def test_conv2d_gpu_route_calls_the_fused_kernels(cupy, monkeypatch):
    """Undilated layers on the GPU copy through cuda_kernels' im2col and col2im; dilated ones do not."""
    calls = []
    for name in ("im2col", "col2im"):
        kernel = getattr(fast_conv.cuda_kernels, name)
        monkeypatch.setattr(fast_conv.cuda_kernels, name,
                            lambda *args, kernel=kernel, name=name: calls.append(name) or kernel(*args))
    for dilation, expected in ((1, ["im2col", "col2im"]), (2, [])):
        calls.clear()
        fn, arrays = conv_case((2, 4, 9, 8), (3, 4, 3, 3), True, 1, 1, dilation, 1)
        run(fn, arrays, device="cuda")
        assert calls == expected


def test_winograd_setting_sends_the_layer_through_the_product(monkeypatch):
    fn, arrays = conv_case((2, 16, 6, 5), (3, 16, 3, 3), True, 1, 1, 1, 1)
    monkeypatch.setattr(mg.config, "winograd", False)
    node = assert_drop_in_equals_textbook(fn, arrays, conv.Conv2d, rtol=1e-12)
    assert conv_route(node) == "product"


@pytest.mark.parametrize("case", ["winograd-3x3", "per-image", "product-groups-dilation-stride"])
def test_conv2d_graph_made_fast_gives_the_textbook_second_derivatives(case):
    """create_graph on a fast node runs the inherited textbook rule: the same second derivatives as textbook."""
    *params, _ = next(param.values for param in CONV_CASES if param.id == case)
    fn, arrays = conv_case(*params)

    def second(textbook):
        inputs = [mg.tensor(a, requires_grad=True) for a in arrays]
        with mg.config.textbook() if textbook else contextlib.nullcontext():
            out = fn(*inputs)
        assert (type(out.grad_fn) is conv.Conv2d) == textbook
        grads = mg.autograd.grad((out * out).sum(), inputs, create_graph=True)
        total = sum((g * g).sum() for g in grads)
        return [g.numpy() for g in mg.autograd.grad(total, inputs)]
    assert_results_equal(second(False), second(True), 1e-10, "second derivatives")


@pytest.mark.parametrize("wanted", [0, 1, 2])
@pytest.mark.parametrize("case", ["winograd-3x3", "per-image", "product-groups-2"])
def test_conv2d_drop_in_computes_one_gradient_alone(case, wanted):
    *params, _ = next(param.values for param in CONV_CASES if param.id == case)
    fn, arrays = conv_case(*params)
    grads = []
    for textbook in (False, True):
        inputs = [mg.tensor(a, requires_grad=k == wanted) for k, a in enumerate(arrays)]
        with mg.config.textbook() if textbook else contextlib.nullcontext():
            out = fn(*inputs)
        out.backward(mg.tensor(randn(*out.shape, seed=4)))
        assert all(t.grad is None for k, t in enumerate(inputs) if k != wanted)
        grads.append(inputs[wanted].grad.numpy())
    assert_results_equal(grads[:1], grads[1:], 1e-11, "one gradient alone")


def test_conv2d_sharing_the_copies_among_threads_changes_nothing(monkeypatch):
    """im2col's offsets and col2im's channels go to threads; each sum stays in one, in a fixed order."""
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(mg.config, "threads", threads)
        for case in ("winograd-3x3", "per-image", "product-groups-2"):
            *params, _ = next(param.values for param in CONV_CASES if param.id == case)
            fn, arrays = conv_case(*params, dtype=np.float32)
            results.append(run(fn, arrays)[1])
    for one, three in zip(results[:3], results[3:]):
        for a, b in zip(one, three):
            np.testing.assert_array_equal(a, b)


# ----- the fast im2col and col2im ------------------------------------------------------------------

@pytest.mark.parametrize("dilation", [(1, 1), (2, 3)])
def test_fast_im2col_equals_the_textbook_one_in_both_layouts(dilation):
    x = randn(3, 2, 9, 8, seed=1)
    kernel_size, stride, padding = (3, 2), (2, 1), ((1, 2), (0, 1))
    expected = conv.im2col(x, kernel_size, stride, padding, dilation)  # (C, kH, kW, N, Ho, Wo)
    np.testing.assert_array_equal(fast_conv.im2col(x, kernel_size, stride, padding, dilation), expected)
    by_image = fast_conv.im2col(x, kernel_size, stride, padding, dilation, per_image=True)  # (N, C, kH, kW, Ho, Wo)
    np.testing.assert_array_equal(by_image, expected.transpose(3, 0, 1, 2, 4, 5))


@pytest.mark.parametrize("per_image", [False, True])
def test_col2im_is_the_adjoint_of_im2col(per_image):
    # <im2col(x), c> = <x, col2im(c)>: why col2im is the backward of the copy
    x = randn(2, 3, 6, 5, seed=1)
    kernel_size, stride, padding = (3, 2), (2, 1), ((1, 2), (0, 1))
    for dilation in ((1, 1), (2, 3)):
        cols = fast_conv.im2col(x, kernel_size, stride, padding, dilation, per_image=per_image)
        c = randn(*cols.shape, seed=2)
        assert np.isclose((cols * c).sum(),
                          (x * fast_conv.col2im(c, x.shape, stride, padding, dilation, per_image=per_image)).sum())


def test_both_column_layouts_give_the_same_col2im():
    x_shape, kernel_size, stride, padding = (3, 2, 7, 6), (3, 2), (2, 1), ((1, 2), (0, 1))
    by_image = fast_conv.im2col(randn(*x_shape, seed=1), kernel_size, stride, padding, per_image=True)
    c = randn(*by_image.shape, seed=2)
    np.testing.assert_allclose(fast_conv.col2im(c, x_shape, stride, padding, per_image=True),
                               fast_conv.col2im(np.ascontiguousarray(c.transpose(1, 2, 3, 0, 4, 5)), x_shape,
                                                stride, padding), rtol=1e-12)


# ----- pooling --------------------------------------------------------------------------------------

def ties(*shape):
    """Few levels, so that windows hold their maximum more than once."""
    return np.floor(randn(*shape, seed=2))


def with_nans(x):
    """NaN alone and two to a window, in every kind of place."""
    x = x.copy()
    x[0, 0, 0, 1] = x[0, 0, 1, 1] = x[1, 1, 2, 2] = x[1, 1, 0, 5] = x[1, 0, 5, 4] = x[0, 1, 3, 3] = np.nan
    x[1, 2, 4, 4] = x[1, 2, 5, 6] = x[1, 2, 6, 7] = np.nan
    return x


POOL_INPUTS = {"random": lambda shape: randn(*shape, seed=1), "ties": lambda shape: ties(*shape),
               "nan": lambda shape: with_nans(randn(*shape, seed=1))}

MAX_POOL_CASES = [  # input shape, kernel_size, stride, padding, route
    pytest.param((2, 3, 7, 9), 2, None, 0, "pairs", id="pairs-cropped-edges"),
    pytest.param((2, 3, 13, 11), (3, 4), None, 0, "tiles", id="tiles-cropped-edges"),
    pytest.param((2, 3, 35, 33), 16, None, 0, "tiles", id="tiles-16x16"),
    pytest.param((2, 3, 9, 9), 3, 2, 1, "slices", id="slices-overlapping-padding"),
    pytest.param((2, 3, 8, 8), (2, 3), 1, (1, 0), "slices", id="slices-stride-1-padding-pair"),
    pytest.param((2, 3, 9, 9), 2, 3, 0, "slices", id="slices-gaps"),
    pytest.param((2, 3, 8, 8), (1, 4), None, 0, "slices", id="slices-side-by-side-1x4"),
    pytest.param((2, 3, 8, 8), 2, None, 1, "slices", id="slices-side-by-side-padding"),
]


def max_pool(kernel_size, stride, padding):
    return lambda x: F.max_pool2d(x, kernel_size, stride, padding)


@pytest.mark.parametrize("values", sorted(POOL_INPUTS))
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding, route", MAX_POOL_CASES)
def test_max_pool_drop_in_equals_the_textbook_rule(x_shape, kernel_size, stride, padding, route, values):
    """The same winners (first maximum of a tie, last NaN of a window): equal to the last bit."""
    x = POOL_INPUTS[values](x_shape)
    node = assert_drop_in_equals_textbook(max_pool(kernel_size, stride, padding), [x], pool.MaxPool2d, rtol=0)
    assert node.route == route


@requires_torch
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding, route", MAX_POOL_CASES)
def test_max_pool_nan_windows_give_their_gradient_to_the_last_nan_like_torch(x_shape, kernel_size, stride,
                                                                             padding, route):
    x = with_nans(randn(*x_shape, seed=1))
    _, mine = run(max_pool(kernel_size, stride, padding), [x])
    x_torch = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.max_pool2d(x_torch, kernel_size, stride, padding)
    out.backward(torch.tensor(randn(*out.shape, seed=9)))
    np.testing.assert_array_equal(mine[0], out.detach().numpy())
    # overlapping windows: a pixel sums the gradients of the windows it wins in another order than PyTorch
    np.testing.assert_allclose(mine[1], x_torch.grad.numpy(), rtol=1e-12, atol=1e-12)


@requires_torch
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding, route", MAX_POOL_CASES)
def test_a_nan_or_inf_upstream_gradient_reaches_the_winner_alone_like_torch(x_shape, kernel_size, stride, padding,
                                                                             route, fast, monkeypatch):
    """Each window's gradient is put at its winner (selected, not multiplied by the masks), so NaN and inf
    from upstream stay out of the other pixels, on every route and under the textbook rule, as in PyTorch."""
    monkeypatch.setattr(mg.config, "fast", fast)
    x = randn(*x_shape, seed=1)
    t = mg.tensor(x, requires_grad=True)
    out = F.max_pool2d(t, kernel_size, stride, padding)
    upstream = randn(*out.shape, seed=9)
    upstream.flat[::5], upstream.flat[1::7] = np.nan, np.inf
    out.backward(mg.tensor(upstream))
    assert type(out.grad_fn) is (fast_pool.MaxPool2d if fast else pool.MaxPool2d)
    x_torch = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(x_torch, kernel_size, stride, padding).backward(torch.tensor(upstream))
    np.testing.assert_allclose(t.grad.numpy(), x_torch.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("values", ["ties", "nan"])
@pytest.mark.parametrize("case", ["pairs-cropped-edges", "tiles-cropped-edges", "slices-overlapping-padding"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_drop_in_on_the_gpu_equals_the_textbook_rule(cupy, case, values, dtype):
    """On the GPU the NaN fix-up runs without asking the device whether there is a NaN."""
    x_shape, kernel_size, stride, padding, route = next(param.values for param in MAX_POOL_CASES if param.id == case)
    x = POOL_INPUTS[values](x_shape).astype(dtype)
    node = assert_drop_in_equals_textbook(max_pool(kernel_size, stride, padding), [x], pool.MaxPool2d, rtol=0,
                                          device="cuda")
    assert node.route == route


@pytest.mark.parametrize("case", ["pairs-cropped-edges", "tiles-cropped-edges", "slices-overlapping-padding"])
def test_max_pool_graph_made_fast_gives_the_textbook_second_derivatives(case):
    """create_graph on a fast node reads its route's record as the textbook masks (``winner_masks``)."""
    x_shape, kernel_size, stride, padding, route = next(param.values for param in MAX_POOL_CASES if param.id == case)
    x, fn = ties(*x_shape), max_pool(kernel_size, stride, padding)

    def second(textbook):
        t = mg.tensor(x, requires_grad=True)
        with mg.config.textbook() if textbook else contextlib.nullcontext():
            out = fn(t * t)
        assert (type(out.grad_fn) is pool.MaxPool2d) == textbook
        g, = mg.autograd.grad((out * out).sum(), [t], create_graph=True)
        return mg.autograd.grad((g * g).sum(), [t])[0].numpy()
    np.testing.assert_array_equal(second(False), second(True))


AVG_POOL_CASES = [  # input shape, kernel_size, stride, padding
    pytest.param((2, 3, 7, 9), 2, None, 0, id="side-by-side"),
    pytest.param((2, 3, 9, 9), 3, 2, 1, id="overlapping-padding"),
    pytest.param((2, 3, 8, 8), (3, 2), (1, 2), (1, 0), id="overlapping-pair"),
    pytest.param((2, 3, 9, 9), 2, 3, 0, id="gaps"),
]


@pytest.mark.parametrize("x_shape, kernel_size, stride, padding", AVG_POOL_CASES)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_avg_pool_drop_in_equals_the_textbook_rule(request, x_shape, kernel_size, stride, padding, device):
    """The shares are added in the same order (offsets row-major, from zeros): equal to the last bit."""
    if device == "cuda":
        request.getfixturevalue("cupy")
    fn = lambda x: F.avg_pool2d(x, kernel_size, stride, padding)  # noqa: E731
    assert_drop_in_equals_textbook(fn, [randn(*x_shape, seed=1)], pool.AvgPool2d, rtol=0, device=device)


@pytest.mark.parametrize("x_shape", [(2, 3, 5, 4), (1, 1, 1, 1)])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_adaptive_avg_pool_drop_in_equals_the_textbook_rule(request, x_shape, device):
    if device == "cuda":
        request.getfixturevalue("cupy")
    fn = lambda x: F.adaptive_avg_pool2d(x, 1)  # noqa: E731
    assert_drop_in_equals_textbook(fn, [randn(*x_shape, seed=1)], pool.AdaptiveAvgPool2d, rtol=0, device=device)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel_size, stride", [(2, 2), (3, 2), (2, 3), (3, 3)],
                         ids=["pairs", "overlapping", "gaps", "tiles"])
def test_pool_sharing_the_images_among_threads_changes_nothing(monkeypatch, kind, kernel_size, stride):
    x = np.random.default_rng(3).standard_normal((7, 3, 9, 9)).astype(np.float32)
    x[:, :, :2, :2] = 0  # ties in a window
    fn = (F.max_pool2d if kind == "max" else F.avg_pool2d)
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(mg.config, "threads", threads)
        results.append(run(lambda t: fn(t, kernel_size, stride), [x])[1])
    (out_one, grad_one), (out_three, grad_three) = results
    assert np.array_equal(out_one, out_three) and np.array_equal(grad_one, grad_three)
    assert np.abs(grad_one).sum() > 0
