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


@requires_torch
@pytest.mark.parametrize("fast", [True, False])
def test_relu_gradient_at_nan_and_infinities_is_pytorchs(monkeypatch, fast):
    """threshold_backward: 0 where y <= 0, else the upstream gradient, at a NaN input too."""
    monkeypatch.setattr(mg.config, "fast", fast)
    x = np.array([np.nan, -np.inf, np.inf, -1.0, 0.0, 2.0])
    upstream = np.array([3.0, np.nan, 4.0, np.inf, 5.0, 6.0])
    t = mg.tensor(x, requires_grad=True)
    t.relu().backward(mg.tensor(upstream))
    expected = torch.tensor(x, requires_grad=True)
    torch.relu(expected).backward(torch.tensor(upstream))
    np.testing.assert_array_equal(t.grad.numpy(), expected.grad.numpy())


def test_broadcast_error_names_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        mg.tensor(np.zeros((2, 3))) + mg.tensor(np.zeros(4))


def test_clip_arguments_are_checked():
    with pytest.raises(ValueError, match="clip: give at least one"):
        mg.tensor([1.0]).clip()
    with pytest.raises(TypeError, match="clip: the bounds must be numbers, got str"):
        mg.tensor([1.0]).clip("0", 1.0)


@requires_torch
@pytest.mark.parametrize("lo,hi", [(0.5, -0.5), (0.2, 0.2), (1e9, -1e9)])
def test_clip_with_lo_above_hi_is_hi_everywhere_with_no_gradient_as_torch_clamp(lo, hi):
    """torch.clamp(x, min, max) is min(max(x, min), max): with min > max every element is max."""
    x = randn(3, 4, seed=6)
    check_grad(lambda t: t.clip(lo, hi) * 1.5, x)
    x[0, :2] = lo  # on the bound itself: PyTorch's slope there is 1 when lo == hi
    check_op(lambda t: t.clip(lo, hi), lambda t: t.clamp(lo, hi), x)


@requires_torch
def test_clip_keeps_nan_and_promotes_an_int_tensor_with_float_bounds_as_torch():
    mine = mg.tensor([np.nan, -3.0, 3.0]).clip(1.0, -1.0)
    theirs = torch.tensor([np.nan, -3.0, 3.0]).clamp(1.0, -1.0)
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    for lo, hi in [(0.5, 1.5), (0, 2), (None, 1.5), (2, 0)]:
        mine = mg.tensor([1, 2, 3]).clip(lo, hi)
        theirs = torch.tensor([1, 2, 3]).clamp(lo, hi)
        assert str(mine.dtype) == str(theirs.dtype).replace("torch.", ""), (lo, hi)
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_int_tensor_to_a_negative_int_power_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"pow: Integers to negative integer powers are not allowed "
                                           r"\(a tensor of dtype int64 to the power -2\)"):
        mg.tensor([1, 2]) ** -2
    with pytest.raises(RuntimeError, match="Integers to negative integer powers"):
        mg.tensor([True]) ** -1  # bool with an int is int64, as in PyTorch
    assert (mg.tensor([1, 2]) ** -2.0).dtype == mg.float32  # a float power is fine: float32, as PyTorch


@requires_torch
def test_integer_powers_with_negative_tensor_exponents_as_torch():
    """A tensor of exponents is computed as PyTorch does (1/a^k rounded towards zero), not refused as NumPy does."""
    base = np.array([0, 1, -1, -1, 2, -3, 5, 7])
    exponent = np.array([-1, -3, -3, -2, -1, -2, 0, 2])
    for mine, theirs in [(mg.tensor(base) ** mg.tensor(exponent), torch.tensor(base) ** torch.tensor(exponent)),
                         (2 ** mg.tensor(exponent), 2 ** torch.tensor(exponent)),
                         (mg.tensor(base, dtype=np.int8) ** mg.tensor(exponent, dtype=np.int8),
                          torch.tensor(base, dtype=torch.int8) ** torch.tensor(exponent, dtype=torch.int8))]:
        assert str(mine.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@requires_torch
@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sigmoid", "tanh", "softmax", "log_softmax", "abs", "relu"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_float_functions_of_integer_tensors_are_float32_as_torch(name, dtype):
    values = np.array([1, 2, 3]).astype(dtype)
    theirs_input = torch.tensor(values)
    if name in ("abs", "relu") and dtype == np.bool_:
        pytest.skip("PyTorch has no abs or relu of bool")
    if "softmax" in name:  # PyTorch refuses integers here; minigrad takes them as the default float dtype
        theirs_input = theirs_input.float()
    mine = getattr(mg.tensor(values), name)()
    theirs = getattr(theirs_input, name)(*([0] if "softmax" in name else []))
    assert str(mine.dtype) == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-6)


def test_functional_sigmoid_and_tanh_of_an_int_tensor_are_float32():
    import minigrad.nn.functional as F
    assert F.sigmoid(mg.tensor([0, 1])).dtype == mg.float32 and F.tanh(mg.tensor([0, 1])).dtype == mg.float32


def test_mul_saves_only_the_factor_the_other_gradient_needs():
    """d(ab)/da needs b only: a weight times data does not keep the weight (nor does PyTorch)."""
    w, x = mg.tensor([1.0, 2.0], requires_grad=True), mg.tensor([3.0, 4.0])
    node = (w * x).grad_fn
    assert node.saved[0] is None and node.saved[1] is x.data


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


def test_relu_of_booleans_is_refused_as_pytorch():
    with pytest.raises(TypeError, match=r"relu: boolean inputs are not supported \(as in PyTorch\); convert"):
        mg.tensor(np.array([True, False])).relu()
