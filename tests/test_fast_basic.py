"""The elementwise, reduction, shape and matmul drop-ins (minigrad/fast/) equal their textbook rules (minigrad/ops/).

One table of cases, one op each (its output's node is the op under test). For
every case, on the CPU and on the GPU (real CuPy or the stand-in), in float64
and float32: the forward output and the first-order gradients of every input
that wants one are computed four ways and compared with the textbook rule's
(``mg.config.textbook()`` for both passes):

- fast forward and fast backward (``backward_arrays``): the drop-in's own rule;
- fast forward, then ``create_graph``: the inherited textbook backward on a
  node the fast forward made (it must set everything that backward reads);
- fast forward, backward with the fast paths off (the textbook backward again).

The node that ran is checked too: the drop-in with the fast paths on, the
textbook class with them off, so that no case compares a path with itself.
float64 agrees to rtol 1e-12 (the rules are the same arithmetic, some sums
taken over the axes in another order); float32 to rtol 1e-5 (a few roundings
of such sums).
"""
import contextlib

import numpy as np
import pytest

import minigrad as mg
from minigrad.fast import elementwise as fast_elementwise
from minigrad.ops import elementwise, matmul, reduce, shape

COVERS = {
    elementwise.Add, elementwise.Sub, elementwise.Mul, elementwise.Div, elementwise.Pow, elementwise.Neg,
    elementwise.Exp, elementwise.Log, elementwise.Sqrt, elementwise.Abs, elementwise.Clip, elementwise.ReLU,
    elementwise.Sigmoid, elementwise.Tanh,
    reduce.Sum, reduce.Mean, reduce.Var, reduce.Max,
    shape.Reshape, shape.Transpose, shape.GetItem, shape.Cast, shape.ToDevice,
    matmul.MatMul, matmul.Linear,
}


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def positive(*shape, seed=0):
    return np.abs(randn(*shape, seed=seed)) + 0.5


def away_from_zero(*shape, seed=0):
    return np.sign(randn(*shape, seed=seed + 7)) * positive(*shape, seed=seed)


def with_zeros(*shape, seed=0):
    x = randn(*shape, seed=seed)
    x.reshape(-1)[::3] = 0.0  # abs, relu: slope 0 at exactly 0
    return x


def ties(*shape, seed=0):
    return np.random.default_rng(seed).integers(-2, 3, shape).astype(np.float64)  # many equal maxima


def index(values, like):
    return mg.tensor(np.asarray(values), device=like.device)


BROADCASTS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 2)), ((1,), (5, 1, 3))]
BINARY = {  # name -> (rule, function, inputs for the two shapes)
    "add": (elementwise.Add, lambda a, b: a + b, lambda s, t: [randn(*s, seed=1), randn(*t, seed=2)]),
    "sub": (elementwise.Sub, lambda a, b: a - b, lambda s, t: [randn(*s, seed=1), randn(*t, seed=2)]),
    "mul": (elementwise.Mul, lambda a, b: a * b, lambda s, t: [randn(*s, seed=1), randn(*t, seed=2)]),
    "div": (elementwise.Div, lambda a, b: a / b, lambda s, t: [randn(*s, seed=1), away_from_zero(*t, seed=2)]),
    "pow": (elementwise.Pow, lambda a, b: a ** b, lambda s, t: [positive(*s, seed=1), randn(*t, seed=2)]),
}

# name -> (rule, function of tensors, input arrays (float64), which inputs want a gradient (None: all))
CASES = {
    f"{name}-{'x'.join(map(str, s)) or '0d'}-{'x'.join(map(str, t)) or '0d'}-{wants}":
        (rule, fn, make(s, t), {"both": None, "first": (True, False), "second": (False, True)}[wants])
    for name, (rule, fn, make) in BINARY.items() for s, t in BROADCASTS for wants in ("both", "first", "second")
    if wants == "both" or s == (3, 1)
}
CASES.update({
    "pow-at-zero": (elementwise.Pow, lambda a, b: a ** b,
                    [np.array([0.0, 0.0, 0.0, 2.0, -1.5, 0.0]), np.array([0.0, 2.0, -1.0, 0.0, 2.0, 0.5])], None),
    "neg": (elementwise.Neg, lambda x: -x, [randn(3, 5)], None),
    "exp": (elementwise.Exp, lambda x: x.exp(), [randn(3, 5)], None),
    "log": (elementwise.Log, lambda x: x.log(), [positive(3, 5)], None),
    "sqrt": (elementwise.Sqrt, lambda x: x.sqrt(), [positive(3, 5)], None),
    "abs": (elementwise.Abs, lambda x: x.abs(), [with_zeros(3, 5)], None),
    "clip": (elementwise.Clip, lambda x: x.clip(-0.5, 0.5), [np.append(randn(14), [-0.5, 0.5])], None),
    "clip-lo": (elementwise.Clip, lambda x: x.clip(lo=0.1), [randn(3, 5)], None),
    "clip-hi": (elementwise.Clip, lambda x: x.clip(hi=0.1), [randn(3, 5)], None),
    "clip-lo-above-hi": (elementwise.Clip, lambda x: x.clip(0.5, -0.5), [randn(3, 5)], None),
    "relu": (elementwise.ReLU, lambda x: x.relu(), [with_zeros(3, 5)], None),
    "relu-0d": (elementwise.ReLU, lambda x: x.relu(), [np.array(1.5)], None),
    "sigmoid": (elementwise.Sigmoid, lambda x: x.sigmoid(), [randn(3, 5)], None),
    "tanh": (elementwise.Tanh, lambda x: x.tanh(), [randn(3, 5)], None),
    "sum": (reduce.Sum, lambda x: x.sum(), [randn(2, 3, 4)], None),
    "sum-axis": (reduce.Sum, lambda x: x.sum(axis=1), [randn(2, 3, 4)], None),
    "sum-axes-keepdims": (reduce.Sum, lambda x: x.sum(axis=(0, 2), keepdims=True), [randn(2, 3, 4)], None),
    "sum-0d": (reduce.Sum, lambda x: x.sum(0), [np.array(2.0)], None),
    "mean": (reduce.Mean, lambda x: x.mean(), [randn(2, 3, 4)], None),
    "mean-axes": (reduce.Mean, lambda x: x.mean(axis=(0, 2)), [randn(2, 3, 4)], None),
    "mean-keepdims": (reduce.Mean, lambda x: x.mean(axis=-1, keepdims=True), [randn(2, 3, 4)], None),
    "mean-empty-group": (reduce.Mean, lambda x: x.mean(axis=0), [np.zeros((0, 3))], None),
    "var": (reduce.Var, lambda x: x.var(), [randn(2, 3, 4)], None),
    "var-axis-unbiased": (reduce.Var, lambda x: x.var(axis=1, unbiased=True), [randn(2, 3, 4)], None),
    "var-keepdims-correction": (reduce.Var, lambda x: x.var(axis=(0, 2), keepdims=True, correction=2.5),
                                [randn(2, 3, 4)], None),
    "var-nothing-left-over-an-axis": (reduce.Var, lambda x: x.var(axis=0, correction=1), [randn(1, 4)], None),
    "var-below-zero-over-an-axis": (reduce.Var, lambda x: x.var(axis=0, correction=3), [randn(2, 4)], None),
    "var-nothing-left-whole": (reduce.Var, lambda x: x.var(correction=2), [np.array([1.0, 1.0])], None),
    "var-empty": (reduce.Var, lambda x: x.var(axis=0), [np.zeros((0, 3))], None),
    "max": (reduce.Max, lambda x: x.max(), [ties(4, 5)], None),
    "max-axis-ties": (reduce.Max, lambda x: x.max(axis=1), [ties(4, 5)], None),
    "max-keepdims": (reduce.Max, lambda x: x.max(axis=0, keepdims=True), [ties(4, 5)], None),
    "reshape": (shape.Reshape, lambda x: x.reshape(6, 4), [randn(2, 3, 4)], None),
    "flatten": (shape.Reshape, lambda x: x.flatten(1), [randn(2, 3, 4)], None),
    "transpose-reverse": (shape.Transpose, lambda x: x.transpose(), [randn(2, 3, 4)], None),
    "transpose-swap": (shape.Transpose, lambda x: x.transpose(0, 2), [randn(2, 3, 4)], None),
    "permute": (shape.Transpose, lambda x: x.transpose(2, 0, 1), [randn(2, 3, 4)], None),
    "getitem-basic": (shape.GetItem, lambda x: x[1, :, ::2], [randn(2, 3, 4)], None),
    "getitem-repeats": (shape.GetItem, lambda x: x[index([0, 2, 0, 0, 1], x)], [randn(3, 4)], None),
    "getitem-two-arrays": (shape.GetItem, lambda x: x[index([1, 1, 0], x), index([2, 2, 3], x)],
                           [randn(3, 4)], None),
    "getitem-strided-view-repeats": (shape.GetItem, lambda x: x[::2, index([3, 0, 3, 3], x)], [randn(5, 4)], None),
    "getitem-mixed": (shape.GetItem, lambda x: x[:, index([0, 2, 0], x), 1:], [randn(2, 3, 4)], None),
    "getitem-mask": (shape.GetItem, lambda x: x[x > 0.1], [randn(4, 5)], None),
    "cast": (shape.Cast, lambda x: x.to(mg.float32 if x.dtype == mg.float64 else mg.float64), [randn(3, 4)], None),
    "matmul": (matmul.MatMul, lambda a, b: a @ b, [randn(3, 4, seed=1), randn(4, 5, seed=2)], None),
    "matmul-vector-matrix": (matmul.MatMul, lambda a, b: a @ b, [randn(4, seed=1), randn(4, 5, seed=2)], None),
    "matmul-matrix-vector": (matmul.MatMul, lambda a, b: a @ b, [randn(3, 4, seed=1), randn(4, seed=2)], None),
    "matmul-vectors": (matmul.MatMul, lambda a, b: a @ b, [randn(4, seed=1), randn(4, seed=2)], None),
    "matmul-batched": (matmul.MatMul, lambda a, b: a @ b, [randn(2, 3, 4, seed=1), randn(4, 5, seed=2)], None),
    "matmul-broadcast-batches": (matmul.MatMul, lambda a, b: a @ b,
                                 [randn(2, 1, 3, 4, seed=1), randn(5, 4, 2, seed=2)], None),
    "matmul-only-b": (matmul.MatMul, lambda a, b: a @ b, [randn(3, 4, seed=1), randn(4, 5, seed=2)], (False, True)),
    "linear": (matmul.Linear, mg.nn.functional.linear, [randn(6, 4, seed=1), randn(3, 4, seed=2), randn(3, seed=3)],
               None),
    "linear-no-bias-3d": (matmul.Linear, mg.nn.functional.linear, [randn(2, 5, 4, seed=1), randn(3, 4, seed=2)],
                          None),
    "linear-frozen-weight": (matmul.Linear, mg.nn.functional.linear,
                             [randn(6, 4, seed=1), randn(3, 4, seed=2), randn(3, seed=3)], (True, False, True)),
})

# name of the run -> (fast paths on in forward, in backward, create_graph)
RUNS = {"fast": (True, True, False), "fast-then-create-graph": (True, True, True),
        "fast-then-textbook-backward": (True, False, False)}


def fast_paths(on):
    return contextlib.nullcontext() if on else mg.config.textbook()


def run(case, dtype, device, fast_forward, fast_backward, create_graph):
    """The case's node type, output and input gradients (NumPy arrays), the passes run as asked."""
    rule, fn, arrays, wants = CASES[case]
    wants = wants or [True] * len(arrays)
    inputs = [mg.tensor(a.astype(dtype), device=device, requires_grad=want) for a, want in zip(arrays, wants)]
    with fast_paths(fast_forward):
        out = fn(*inputs)
    upstream = mg.tensor(randn(*out.shape, seed=11).astype(out.dtype), device=device)
    with fast_paths(fast_backward):
        grads = mg.autograd.grad(out, [t for t in inputs if t.requires_grad], upstream, create_graph=create_graph)
    assert all(g.device == t.device and g.dtype == t.dtype for g, t in zip(grads, inputs))
    return type(out.grad_fn), out.numpy(), [g.numpy() for g in grads]


def tolerance(dtype):
    return {"rtol": 1e-12, "atol": 1e-14} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.usefixtures("fast_on")
@pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")  # 0 ** -1 and inf * 0 at pow-at-zero
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_each_drop_in_equals_its_textbook_rule(request, case, dtype, device):
    if device == "cuda":
        request.getfixturevalue("cupy")  # real CuPy, or the stand-in
    rule = CASES[case][0]
    drop_in = mg.config.drop_ins[rule]
    assert issubclass(drop_in, rule) and drop_in is not rule and drop_in.__name__ == rule.__name__
    textbook_type, expected_out, expected_grads = run(case, dtype, device, False, False, False)
    assert textbook_type is rule
    for name, passes in RUNS.items():
        node_type, out, grads = run(case, dtype, device, *passes)
        assert node_type is drop_in, name
        np.testing.assert_allclose(out, expected_out, **tolerance(dtype), err_msg=f"{name}: forward")
        for number, (grad, expected) in enumerate(zip(grads, expected_grads)):
            np.testing.assert_allclose(grad, expected, **tolerance(dtype), err_msg=f"{name}: gradient {number}")


@pytest.mark.usefixtures("fast_on")
def test_the_drop_ins_are_the_ones_in_use():
    from minigrad.fast import matmul as fast_matmul, reduce as fast_reduce, shape as fast_shape
    for family in (fast_elementwise, fast_reduce, fast_shape, fast_matmul):
        for rule, drop_in in family.DROP_INS.items():
            assert mg.config.drop_ins[rule] is drop_in and rule in COVERS
            assert "backward_arrays" not in vars(rule), f"{rule.__name__} keeps an array rule in ops/"


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("op", ["relu", "clip"])
def test_relu_and_clip_agree_bit_for_bit_on_nan_signed_zeros_and_infinities(request, device, op):
    """Both paths give the same bits, the sign of a zero included; NaN stays NaN (as PyTorch); a NaN or inf
    upstream stays out where the slope is 0 (selected, not multiplied, as PyTorch's threshold and clamp
    backward); and ReLU passes the gradient at a NaN input on, on both paths, as PyTorch."""
    if device == "cuda":
        request.getfixturevalue("cupy")
    x = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -1.0, 2.0, 0.3])
    upstream = np.array([1.0, np.nan, np.inf, np.nan, 2.0, -np.inf, 3.0, np.nan])
    results = []
    for fast in (True, False):
        with fast_paths(fast):
            t = mg.tensor(x, device=device, requires_grad=True)
            out = t.relu() if op == "relu" else t.clip(-0.5, 0.5)
            out.backward(mg.tensor(upstream, device=device))
        results.append((out.numpy(), t.grad.numpy()))
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64))  # every bit
    out, grad = results[1]
    if op == "relu":
        np.testing.assert_array_equal(out, [np.nan, 0.0, 0.0, 0.0, np.inf, 0.0, 2.0, 0.3])
        np.testing.assert_array_equal(grad, [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 3.0, np.nan])
    else:
        np.testing.assert_array_equal(out, [np.nan, -0.0, 0.0, -0.5, 0.5, -0.5, 0.5, 0.3])
        np.testing.assert_array_equal(grad, [0.0, np.nan, np.inf, 0.0, 0.0, 0.0, 0.0, np.nan])


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8, np.int8])
def test_relu_keeps_the_dtype_on_both_paths(request, device, dtype):
    if device == "cuda":
        request.getfixturevalue("cupy")
    x = np.array([-3, 0, 2, 5]).astype(dtype) if np.dtype(dtype).kind != "u" else np.array([0, 2, 5], dtype)
    for fast in (True, False):
        with fast_paths(fast):
            y = mg.tensor(x, device=device).relu()
        assert y.dtype == dtype
        np.testing.assert_array_equal(y.numpy(), np.where(x > 0, x, 0))


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("threads", [1, 3])
def test_a_large_relu_split_among_threads_equals_the_textbook_rule_bit_for_bit(monkeypatch, threads):
    """Above 2^17 values the fast ReLU shares the batch among threads: the same bits as the textbook rule."""
    monkeypatch.setattr(mg.config, "threads", threads)
    x = np.random.default_rng(0).standard_normal((9, 8, 48, 48)).astype(np.float32)
    x[0, 0, 0, :3] = 0.0  # the gradient at exactly 0 is 0, as in PyTorch
    upstream = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    results = []
    for fast in (True, False):
        with fast_paths(fast):
            t = mg.tensor(x, requires_grad=True)
            y = t.relu()
            assert type(y.grad_fn) is (fast_elementwise.ReLU if fast else elementwise.ReLU)
            y.backward(mg.tensor(upstream))
        results.append((y.numpy(), t.grad.numpy()))
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(results[0][1], np.where(x > 0, upstream, 0))


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_on_the_gpu_takes_the_fused_kernel_and_equals_the_textbook_rule(cupy, monkeypatch, dtype):
    calls = []
    kernel = fast_elementwise.cuda_kernels.relu_backward
    monkeypatch.setattr(fast_elementwise.cuda_kernels, "relu_backward",
                        lambda grad, y: calls.append(1) or kernel(grad, y))
    x = np.array([[np.nan, -0.0, 0.0, -np.inf, np.inf], [-1.0, 2.0, 0.3, -0.2, 1e-30]], dtype=dtype)
    upstream = np.array([[1.0, np.nan, np.inf, np.nan, 2.0], [-np.inf, 3.0, np.nan, 4.0, 5.0]], dtype=dtype)
    results = []
    for fast in (True, False):
        with fast_paths(fast):
            t = mg.tensor(x, device="cuda", requires_grad=True)
            y = t.relu()
            y.backward(mg.tensor(upstream, device="cuda"))
        results.append((y.numpy(), t.grad.numpy()))
    assert calls == [1]  # the fast backward, once; the textbook one took no kernel
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_copies_equal_the_textbook_rule(cupy, dtype):
    x = randn(3, 4).astype(dtype)
    upstream = randn(3, 4, seed=1).astype(dtype)
    for there, back in (("cuda", "cpu"), ("cpu", "cuda")):
        results = []
        for fast in (True, False):
            with fast_paths(fast):
                t = mg.tensor(x, device=there, requires_grad=True)
                out = t.to(back)
                assert type(out.grad_fn) is (mg.config.drop_ins[shape.ToDevice] if fast else shape.ToDevice)
                out.backward(mg.tensor(upstream, device=back))
            assert t.grad.device.startswith(there[:3]) and t.grad.dtype == dtype
            results.append(t.grad.numpy())
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_array_equal(results[0], upstream)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_zero_where_selects_bit_for_bit_as_a_masked_copy(dtype):
    """ReLU's fast selection: +0 where dropped, every other value's bits kept (NaN, inf, -0.0), into a strided out."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((6, 10)).astype(dtype)
    values.flat[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.nan]
    drop = rng.random((6, 10)) < 0.5
    drop.flat[:6] = [False, False, False, False, True, True]
    out = np.full((6, 20), 7, dtype)[:, ::2]  # a strided view: every other column
    fast_elementwise.zero_where(drop, values, out=out)
    expected = np.zeros_like(values)
    np.copyto(expected, values, where=~drop)
    bits = np.dtype(f"i{values.itemsize}")
    np.testing.assert_array_equal(np.ascontiguousarray(out).view(bits), expected.view(bits))
