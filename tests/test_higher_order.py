"""Higher-order gradients: the engine's create_graph and grad(), the config switch, and the textbook rules
of the basic families (elementwise, reduce, shape, matmul) differentiated twice and three times,
against PyTorch and finite differences."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the test oracle) is not installed")

rng = np.random.default_rng(0)
POSITIVE = rng.uniform(0.5, 2.0, (3, 4))
ANY = rng.standard_normal((3, 4))
ROW = rng.standard_normal((4,))
MATRIX = rng.standard_normal((4, 2))

# name: (minigrad function, PyTorch function, inputs)
CASES = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, [ANY, ROW]),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, [ANY, ROW]),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, [ANY, ROW]),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [ANY, POSITIVE]),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b, [POSITIVE, ANY]),
    "square": (lambda a: a ** 2, lambda a: a ** 2, [ANY]),
    "neg": (lambda a: -a * a, lambda a: -a * a, [ANY]),
    "exp": (lambda a: a.exp(), lambda a: a.exp(), [ANY]),
    "log": (lambda a: a.log(), lambda a: a.log(), [POSITIVE]),
    "sqrt": (lambda a: a.sqrt(), lambda a: a.sqrt(), [POSITIVE]),
    "abs": (lambda a: a.abs() * a, lambda a: a.abs() * a, [ANY]),
    "clip": (lambda a: a.clip(-0.5, 0.5) * a, lambda a: a.clamp(-0.5, 0.5) * a, [ANY]),
    "relu": (lambda a: a.relu() * a, lambda a: a.relu() * a, [ANY]),
    "sigmoid": (lambda a: a.sigmoid(), lambda a: a.sigmoid(), [ANY]),
    "tanh": (lambda a: a.tanh(), lambda a: a.tanh(), [ANY]),
    "sum": (lambda a: (a * a).sum(axis=1), lambda a: (a * a).sum(dim=1), [ANY]),
    "mean": (lambda a: (a * a).mean(axis=0, keepdims=True), lambda a: (a * a).mean(dim=0, keepdim=True), [ANY]),
    "var": (lambda a: a.var(axis=1), lambda a: a.var(dim=1, unbiased=False), [ANY]),
    "var_unbiased": (lambda a: a.var(correction=1), lambda a: a.var(), [ANY]),
    "max": (lambda a: (a * a).max(axis=1), lambda a: (a * a).amax(dim=1), [ANY]),
    "reshape": (lambda a: a.reshape(2, 6) ** 2, lambda a: a.reshape(2, 6) ** 2, [ANY]),
    "transpose": (lambda a: a.T * a.T, lambda a: a.T * a.T, [ANY]),
    "index": (lambda a: a[[0, 0, 2], 1:3] ** 3, lambda a: a[[0, 0, 2], 1:3] ** 3, [ANY]),
    "matmul": (lambda a, b: (a @ b) ** 2, lambda a, b: (a @ b) ** 2, [ANY, MATRIX]),
    "matvec": (lambda a, b: (a @ b) ** 2, lambda a, b: (a @ b) ** 2, [ANY, ROW]),
    "linear": (lambda x, w: mg.nn.functional.linear(x, w).tanh(),
               lambda x, w: torch.nn.functional.linear(x, w).tanh(), [ANY, MATRIX.T.copy()]),
    "cast": (lambda a: a.float().double() * a, lambda a: a.float().double() * a, [ANY]),
}


def mg_inputs(arrays):
    return [mg.tensor(a.copy(), requires_grad=True) for a in arrays]


def second_derivatives(fn, tensors, grad, weights, order=2):
    """d/dx_j of sum_i sum(u_i * d sum(v * f)/dx_i): a Hessian-vector product (order 3: once more)."""
    v, us = weights
    out = fn(*tensors)
    firsts = grad(out, tensors, v(out), create_graph=True)
    total = sum((g * u).sum() for g, u in zip(firsts, us) if g is not None)
    if not getattr(total, "requires_grad", False):  # every first derivative is a constant
        return [None] * len(tensors)
    seconds = grad(total, tensors, None, create_graph=order > 2)
    if order == 2:
        return seconds
    total = sum((g * u).sum() for g, u in zip(seconds, us) if g is not None)
    if not getattr(total, "requires_grad", False):  # every second derivative is a constant
        return [None] * len(tensors)
    return grad(total, tensors, None, create_graph=False)


def mg_grad(out, inputs, grad_output, create_graph):
    return mg.autograd.grad(out, inputs, grad_output, create_graph=create_graph, allow_unused=True)


def torch_grad(out, inputs, grad_output, create_graph):
    return torch.autograd.grad(out, inputs, grad_output, create_graph=create_graph, allow_unused=True)


def as_numpy(gradient, shape):
    if gradient is None:
        return np.zeros(shape)
    return gradient.numpy() if isinstance(gradient, mg.Tensor) else gradient.detach().numpy(force=True)


@needs_torch
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_second_and_third_derivatives_match_pytorch(name, order):
    mg_fn, torch_fn, arrays = CASES[name]
    v_rng = np.random.default_rng(1)
    shape = mg_fn(*mg_inputs(arrays)).shape
    v = v_rng.standard_normal(shape)
    us = [v_rng.standard_normal(a.shape) for a in arrays]
    mine = second_derivatives(mg_fn, mg_inputs(arrays), mg_grad,
                              (lambda out: mg.tensor(v), [mg.tensor(u) for u in us]), order)
    theirs_inputs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = second_derivatives(torch_fn, theirs_inputs, torch_grad,
                                (lambda out: torch.tensor(v), [torch.tensor(u) for u in us]), order)
    for i, (a, b) in enumerate(zip(mine, theirs)):
        np.testing.assert_allclose(as_numpy(a, arrays[i].shape), as_numpy(b, arrays[i].shape), rtol=1e-10,
                                   atol=1e-12, err_msg=f"{name}: derivative of order {order}, input {i}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_derivatives_match_finite_differences(name):
    mg_fn, _, arrays = CASES[name]
    if name == "cast":
        pytest.skip("a float32 round trip is too coarse for finite differences")
    if name == "linear":
        mg_fn = lambda x, w: mg.nn.functional.linear(x, w).tanh()  # noqa: E731 (no torch needed)
    assert mg.utils.gradgradcheck(mg_fn, *mg_inputs(arrays))


@pytest.mark.parametrize("name", sorted(CASES))
def test_first_order_is_the_same_with_the_fast_paths_on_and_off(name):
    mg_fn, _, arrays = CASES[name]
    if name == "cast":
        mg_fn = lambda a: a.to(mg.float32).to(mg.float64) * 3  # noqa: E731 (the slope survives the round trip)
    if name == "linear":
        mg_fn = lambda x, w: mg.nn.functional.linear(x, w).tanh()  # noqa: E731
    fast = mg.autograd.grad(mg_fn(*(inputs := mg_inputs(arrays))).sum(), inputs)
    with mg.config.textbook():
        textbook = mg.autograd.grad(mg_fn(*(inputs := mg_inputs(arrays))).sum(), inputs)
        if name != "cast":
            assert mg.utils.gradcheck(mg_fn, *mg_inputs(arrays))
    for a, b in zip(fast, textbook):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


def test_backward_with_create_graph_leaves_differentiable_grads():
    x = mg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.grad_fn is not None
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.array([1.0, 4.0, 9.0]))
    gradient = x.grad
    x.grad = None
    gradient.sum().backward()  # d/dx sum(3 x^2) = 6 x
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 12.0, 18.0])


def test_grad_leaves_dot_grad_alone_and_keeps_the_graph_when_asked():
    x = mg.tensor(np.array([0.5, -1.0]), requires_grad=True)
    y = (x.exp() * x).sum()
    g, = mg.autograd.grad(y, x, create_graph=True)
    assert x.grad is None
    g2, = mg.autograd.grad(y, x, retain_graph=True)  # the graph was kept: retain_graph defaults to create_graph
    np.testing.assert_allclose(g.numpy(), g2.numpy())
    h, = mg.autograd.grad(g.sum(), x)  # d/dx (e^x (1 + x)) = e^x (2 + x)
    np.testing.assert_allclose(h.numpy(), np.exp([0.5, -1.0]) * (2 + np.array([0.5, -1.0])))


def test_grad_of_an_intermediate_result():
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3
    y = (h * h).sum()
    gh, gx = mg.autograd.grad(y, [h, x])
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(gx.numpy(), 18 * x.numpy())


def test_grad_errors():
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    unused = mg.tensor(np.array([1.0]), requires_grad=True)
    with pytest.raises(RuntimeError, match="input 1 was not used"):
        mg.autograd.grad((x * x).sum(), [x, unused])
    assert mg.autograd.grad((x * x).sum(), [x, unused], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        mg.autograd.grad(x * x, x)
    with pytest.raises(RuntimeError, match="input 0 does not require grad"):
        mg.autograd.grad((x * x).sum(), mg.tensor([1.0]))
    with pytest.raises(RuntimeError, match="grad_output of shape"):
        mg.autograd.grad(x * x, x, mg.tensor(np.ones(3)))


def test_an_op_without_a_textbook_rule_says_so_under_create_graph():
    class Twice(Function):
        def forward(self, x):
            return 2 * x

        def backward_arrays(self, grad):
            return 2 * grad

    x = mg.tensor(np.array([1.0]), requires_grad=True)
    assert mg.autograd.grad(Twice.apply(x).sum(), x)[0].item() == 2.0  # first order: its array rule
    with pytest.raises(RuntimeError, match="Twice has no backward rule written with Tensor ops"):
        mg.autograd.grad(Twice.apply(x).sum(), x, create_graph=True)


def test_newtons_method_on_a_scalar():
    """Minimise f(x) = x^4 - 3 x^2 + x from x = 2: x <- x - f'(x) / f''(x), both from autograd."""
    x = mg.tensor(np.array(2.0), requires_grad=True)
    for _ in range(8):
        f = x ** 4 - 3 * x ** 2 + x
        first, = mg.autograd.grad(f, x, create_graph=True)
        second, = mg.autograd.grad(first, x)
        with mg.no_grad():
            x = mg.tensor(x.numpy() - first.numpy() / second.numpy(), requires_grad=True)
    root = x.item()
    assert abs(4 * root ** 3 - 6 * root + 1) < 1e-12  # f'(x) = 0
    assert 12 * root ** 2 - 6 > 0  # a minimum
    np.testing.assert_allclose(root, max(np.roots([4, 0, -6, 1]).real), rtol=1e-12)  # the largest root of f'



@pytest.mark.usefixtures("fast_on")
def test_the_switch_from_the_environment_and_in_code():
    done = subprocess.run([sys.executable, "-c", "import minigrad as mg; print(mg.config.fast)"],
                          capture_output=True, text=True, env=dict(os.environ, MINIGRAD_FAST="0"))
    assert done.stdout.strip() == "False", done.stderr
    assert mg.config.fast is True
    with mg.config.textbook():
        assert mg.config.fast is False
    assert mg.config.fast is True


@pytest.mark.usefixtures("fast_on")
def test_the_textbook_path_is_what_runs_when_the_fast_paths_are_off(monkeypatch):
    from minigrad.ops import elementwise
    calls = []
    original = elementwise.Exp.backward
    monkeypatch.setattr(elementwise.Exp, "backward", lambda self, g: calls.append(1) or original(self, g))
    x = mg.tensor(np.array([1.0]), requires_grad=True)
    x.exp().sum().backward()
    assert calls == []
    with mg.config.textbook():
        x.exp().sum().backward()
    assert calls == [1]


@pytest.mark.parametrize("name", ["mul", "pow", "exp", "relu", "index", "matmul", "var", "max", "linear"])
def test_second_derivatives_on_the_gpu_equal_the_cpu(cupy, name):
    mg_fn, _, arrays = CASES[name]
    if name == "linear":
        mg_fn = lambda x, w: mg.nn.functional.linear(x, w).tanh()  # noqa: E731
    v_rng = np.random.default_rng(1)
    v = v_rng.standard_normal(mg_fn(*mg_inputs(arrays)).shape)
    us = [v_rng.standard_normal(a.shape) for a in arrays]
    results = []
    for device in ("cpu", "cuda"):
        inputs = [mg.tensor(a.copy(), device=device, requires_grad=True) for a in arrays]
        weights = (lambda out: mg.tensor(v, device=device), [mg.tensor(u, device=device) for u in us])
        results.append(second_derivatives(mg_fn, inputs, mg_grad, weights))
    for i, (a, b) in enumerate(zip(*results)):
        assert b is None or b.device.startswith("cuda")
        np.testing.assert_allclose(as_numpy(b, arrays[i].shape), as_numpy(a, arrays[i].shape), rtol=1e-12,
                                   atol=1e-14)


def test_requires_grad_in_place_as_pytorch():
    x = mg.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    assert not x.requires_grad_(False).requires_grad
    with pytest.raises(RuntimeError, match="only be changed on a leaf"):
        (mg.tensor([1.0], requires_grad=True) * 2).requires_grad_(False)


def test_a_rule_that_returns_the_wrong_dtype_is_an_error_not_a_silent_cast():
    class Sloppy(Function):
        def forward(self, x):
            return x * 2

        def backward_arrays(self, grad):
            return (2 * grad).astype("float64")

    x = mg.tensor([1.0], requires_grad=True)  # float32
    with pytest.raises(RuntimeError, match="Sloppy.backward returned a float64 gradient for a float32 input"):
        Sloppy.apply(x).sum().backward()


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
def test_the_implicit_gradient_of_an_infinite_output_is_one_not_nan():
    x = mg.tensor(np.array([1000.0]), requires_grad=True)  # e^1000 overflows to inf
    g, = mg.autograd.grad(x.exp().sum(), x)
    assert np.isposinf(g.numpy()).all()  # d e^x / dx = e^x = inf, not inf * NaN
