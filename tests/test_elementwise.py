"""Elementwise nodes: finite differences and PyTorch, on broadcasting shapes made by hypothesis."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from oracle import check_grad, check_op, randn, requires_torch, torch

BINARY = {
    "add": (lambda a, b: a + b),
    "sub": (lambda a, b: a - b),
    "mul": (lambda a, b: a * b),
    "div": (lambda a, b: a / (b.abs() + 0.5)),
    "pow": (lambda a, b: (a.abs() + 0.5) ** b),
}


@st.composite
def broadcastable_pair(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    return shapes.input_shapes


@pytest.mark.parametrize("name", BINARY)
@settings(max_examples=15, deadline=None)
@given(shapes=broadcastable_pair())
def test_binary_ops_broadcast_with_correct_gradients(name, shapes):
    a, b = randn(*shapes[0], seed=1), randn(*shapes[1], seed=2)
    check_grad(BINARY[name], a, b)


@requires_torch
@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 2)),
                                    ((1,), (5, 1, 3))])
def test_binary_ops_match_pytorch(name, shapes):
    fn = BINARY[name]
    check_op(fn, fn, randn(*shapes[0], seed=3), randn(*shapes[1], seed=4))


UNARY = [
    ("neg", lambda x: -x, lambda x: -x, None),
    ("exp", lambda x: x.exp(), lambda x: x.exp(), None),
    ("log", lambda x: x.log(), lambda x: x.log(), "positive"),
    ("sqrt", lambda x: x.sqrt(), lambda x: x.sqrt(), "positive"),
    ("abs", lambda x: x.abs(), lambda x: x.abs(), None),
    ("clip", lambda x: x.clip(-0.5, 0.7), lambda x: x.clamp(-0.5, 0.7), None),
    ("clip_lo", lambda x: x.clip(lo=0.1), lambda x: x.clamp(min=0.1), None),
    ("relu", lambda x: x.relu(), lambda x: x.relu(), None),
    ("sigmoid", lambda x: x.sigmoid(), lambda x: x.sigmoid(), None),
    ("tanh", lambda x: x.tanh(), lambda x: x.tanh(), None),
    ("square", lambda x: x ** 2, lambda x: x ** 2, None),
    ("rsub", lambda x: 1 - x, lambda x: 1 - x, None),
    ("rdiv", lambda x: 1 / x, lambda x: 1 / x, "positive"),
]


def _unary_input(domain, shape=(3, 5)):
    x = randn(*shape, seed=5)
    return np.abs(x) + 0.1 if domain == "positive" else x


@pytest.mark.parametrize("name,mg_fn,torch_fn,domain", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", [(3, 5), (1,), ()])
def test_unary_gradients(name, mg_fn, torch_fn, domain, shape):
    check_grad(mg_fn, _unary_input(domain, shape))


@requires_torch
@pytest.mark.parametrize("name,mg_fn,torch_fn,domain", UNARY, ids=[u[0] for u in UNARY])
def test_unary_matches_pytorch(name, mg_fn, torch_fn, domain):
    check_op(mg_fn, torch_fn, _unary_input(domain))


def test_sigmoid_is_stable_for_large_inputs():
    y = mg.tensor([-1000.0, 0.0, 1000.0]).sigmoid().numpy()
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_relu_and_abs_have_zero_slope_at_zero_like_pytorch():
    x = mg.tensor([0.0, 0.0], requires_grad=True)
    (x.relu() + x.abs()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_relu_keeps_nan_and_infinities_like_pytorch():
    y = mg.tensor([np.nan, -np.inf, np.inf, -1.0, 2.0]).relu().numpy()
    np.testing.assert_array_equal(y, [np.nan, 0.0, np.inf, 0.0, 2.0])


def test_broadcast_error_names_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        mg.tensor(np.zeros((2, 3))) + mg.tensor(np.zeros(4))


def test_clip_arguments_are_checked():
    with pytest.raises(ValueError, match="clip: lo"):
        mg.tensor([1.0]).clip(2.0, 1.0)
    with pytest.raises(ValueError, match="clip: give at least one"):
        mg.tensor([1.0]).clip()


def test_float32_stays_float32():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = ((x * 2 + 1) / 3 - x.exp()).sigmoid().tanh().sum()
    y.backward()
    assert y.dtype == mg.float32 and x.grad.dtype == mg.float32


@requires_torch
def test_int_tensor_divided_is_float32_like_pytorch():
    mine = mg.tensor([1, 2]) / 2
    theirs = torch.tensor([1, 2]) / 2
    assert mine.dtype == mg.float32 and theirs.dtype == torch.float32


def test_large_relu_is_split_among_threads_without_changing_a_bit(monkeypatch):
    """Above 2^17 values the batch is shared out among threads: same values as NumPy's, for 1 and 3 threads."""
    from minigrad.ops.elementwise import ReLU
    x = np.random.default_rng(0).standard_normal((9, 8, 48, 48)).astype(np.float32)
    x[0, 0, 0, :3] = 0.0  # the gradient at exactly 0 is 0, as in PyTorch
    grad = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    for threads in (1, 3):
        monkeypatch.setenv("MINIGRAD_NUM_THREADS", str(threads))
        node = ReLU()
        np.testing.assert_array_equal(node.forward(x), np.maximum(x, 0))
        np.testing.assert_array_equal(node.backward(grad), np.where(x > 0, grad, 0))
