"""The engine: topological order, accumulation, freeing the graph, no_grad, errors."""
import threading

import numpy as np
import pytest

import minigrad as mg
from oracle import requires_torch, torch


def test_long_chain_needs_no_recursion():
    x = mg.tensor(1.0, dtype=mg.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 10_000, rel=1e-9)


def test_tensor_used_twice_gets_the_sum_of_its_gradients():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x + x  # dy/dx = 2x + 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 5.0, 7.0])


def test_diamond_graph_runs_shared_node_once_with_summed_gradient():
    x = mg.tensor(2.0, dtype=mg.float64, requires_grad=True)
    shared = x.exp()
    out = shared * 3 + shared.log()  # 3 e^x + x
    out.backward()
    assert x.grad.item() == pytest.approx(3 * np.exp(2.0) + 1)


def test_gradients_accumulate_over_backward_calls_until_zeroed():
    x = mg.tensor([1.0, -1.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])
    x.grad = None
    (x * 4).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])


def test_only_inputs_that_require_grad_get_one():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0])
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])
    assert b.grad is None


def test_graph_is_freed_after_backward_and_a_second_pass_says_so():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_backward_on_non_scalar_needs_a_gradient():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"scalar output.*shape \(2,\)"):
        y.backward()
    y.backward(mg.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 20.0])


def test_backward_with_gradient_of_wrong_shape():
    y = mg.tensor([1.0, 2.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"grad has shape \(3,\) but the tensor has shape \(2,\)"):
        y.backward(mg.tensor([1.0, 1.0, 1.0]))


def test_backward_on_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (mg.tensor([1.0]) * 2).sum().backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError, match="only floating-point.*int64"):
        mg.tensor([1, 2, 3], requires_grad=True)


def test_no_grad_records_nothing_and_restores_state():
    x = mg.tensor([1.0], requires_grad=True)
    with mg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert mg.is_grad_enabled()
    assert (x * 2).requires_grad


def test_no_grad_as_decorator():
    @mg.no_grad()
    def double(t):
        return t * 2

    assert double(mg.tensor([1.0], requires_grad=True)).grad_fn is None
    assert mg.is_grad_enabled()


def test_no_grad_is_per_thread():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def evaluator():
        with mg.no_grad():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=evaluator)
    thread.start()
    entered.wait(5)
    seen["main"] = mg.is_grad_enabled()
    release.set()
    thread.join()
    assert seen["main"] is True


def test_detach_cuts_the_graph():
    x = mg.tensor([3.0], requires_grad=True)
    y = (x * 2).detach() * x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0])  # d(6 * x)/dx, not 4x


def test_leaf_gradient_is_writable_and_not_aliased():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor(0.5, requires_grad=True)
    (x + b).sum().backward()  # b's gradient is a sum, x's is a broadcast of ones
    x.grad.data *= 2
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    assert b.grad.item() == 2.0


def test_gradient_keeps_the_leaf_dtype_across_casts():
    w = mg.tensor([1.0, 2.0], requires_grad=True)  # float32
    (w.to(mg.float64) * mg.tensor(np.array([3.0, 4.0]))).sum().backward()
    assert w.grad.dtype == mg.float32
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 4.0])


def test_an_array_given_to_an_op_is_a_type_error_naming_the_op():
    from minigrad.ops.elementwise import Add
    with pytest.raises(TypeError, match="Add: expected Tensor inputs, got a ndarray.*mg.tensor"):
        Add.apply(mg.tensor([1.0]), np.array([1.0]))


def test_requires_grad_of_a_computed_tensor_cannot_be_switched_off():
    """Switching it off would leave the graph's count of paths wrong and the leaves silently without gradient."""
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    with pytest.raises(RuntimeError, match="leaf"):
        h.requires_grad = False
    h.detach().requires_grad = False  # a detached copy is a leaf: fine
    (h * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


# ----- version counters: a saved tensor changed in place -----------------------------------

def test_a_saved_input_changed_in_place_makes_backward_raise_naming_the_op():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.log()  # d(ln x)/dx = 1/x needs x itself
    with mg.no_grad():
        x += 1
    with pytest.raises(RuntimeError, match=r"one of the tensors needed for the gradient of Log was modified in "
                                           r"place since its forward pass \(input 0, shape \(2,\), float32\): "
                                           r"version 0 then, 1 now"):
        y.sum().backward()


@requires_torch
def test_a_saved_output_changed_in_place_raises_as_in_torch():
    x, xt = mg.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    y, yt = x.exp(), xt.exp()  # the gradient of e^x is e^x, the output
    with mg.no_grad():
        y += 1
    with torch.no_grad():
        yt += 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        yt.sum().backward()
    with pytest.raises(RuntimeError, match=r"gradient of Exp was modified in place.*\(its output"):
        y.sum().backward()


def test_a_detached_alias_shares_the_version():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    alias = y.detach()
    with mg.no_grad():
        alias *= 2
    assert y._version == alias._version == 1
    with pytest.raises(RuntimeError, match="gradient of Exp"):
        y.sum().backward()


@requires_torch
def test_data_that_a_node_saved_raises_too_but_a_factor_no_gradient_needs_does_not():
    """w * x keeps x for dL/dw; w itself is not needed (x needs no gradient), as in PyTorch."""
    for lib in (mg, torch):
        w, x = lib.tensor([1.0, 2.0], requires_grad=True), lib.tensor([3.0, 4.0])
        loss = (w * x).sum()
        x += 1  # x needs no gradient: changed in place, outside no_grad too
        with pytest.raises(RuntimeError, match="Mul was modified in place|modified by an inplace"):
            loss.backward()
        w, x = lib.tensor([1.0, 2.0], requires_grad=True), lib.tensor([3.0, 4.0])
        loss = (w * x).sum()
        with lib.no_grad():
            w -= 10
        loss.backward()
        np.testing.assert_array_equal(w.grad.numpy(), [3.0, 4.0])


def _two_layers(lib, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in [(4, 3), (4,), (2, 4), (2,)]]
    if lib is mg:
        model = mg.nn.Sequential(mg.nn.Linear(3, 4), mg.nn.Tanh(), mg.nn.Linear(4, 2))
        layers = [model[0], model[2]]
    else:
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        layers = [model[0], model[2]]
    for layer, (weight, bias) in zip(layers, [arrays[:2], arrays[2:]]):  # the same weights in both
        layer.weight.data[...] = weight if lib is mg else torch.tensor(weight)
        layer.bias.data[...] = bias if lib is mg else torch.tensor(bias)
    inputs = np.random.default_rng(seed + 1).standard_normal((5, 3)).astype(np.float32)
    loss = (model(lib.tensor(inputs)) ** 2).sum()
    return model, layers, loss


@requires_torch
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_an_optimizer_step_between_two_backwards_raises_as_in_torch(optimizer):
    """The second layer's weight is saved for the first layer's gradient: stepping on it spoils that graph."""
    for lib in (mg, torch):
        model, layers, loss = _two_layers(lib)
        step = getattr(lib.optim, optimizer)(model.parameters(), lr=0.1)
        loss.backward(retain_graph=True)
        version = layers[1].weight._version
        step.step()
        assert layers[1].weight._version == version + 1
        with pytest.raises(RuntimeError, match=r"gradient of Linear was modified in place.*\(input 1, shape "
                                               r"\(2, 4\), float32\): version (\d+) then, (\d+) now|modified by an inplace"):
            loss.backward()


@requires_torch
def test_a_weight_no_node_saved_may_change_between_two_backwards():
    """A bias is not needed by any gradient: stepping on it alone leaves the graph usable, as in PyTorch."""
    grads = {}
    for lib in (mg, torch):
        model, layers, loss = _two_layers(lib)
        biases = [layer.bias for layer in layers]
        step = lib.optim.SGD(biases, lr=0.1)
        loss.backward(retain_graph=True)
        step.step()
        loss.backward()  # gradients accumulate: twice the first
        grads[lib] = [p.grad.numpy() for p in model.parameters()]
    for mine, theirs in zip(grads[mg], grads[torch]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_nothing_is_checked_once_the_graph_is_freed():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.log()
    node = y.grad_fn
    assert [(which, then) for _, then, which, _ in node.saved_versions] == [("input 0", 0)]
    y.sum().backward()
    assert node.saved is None and node.saved_versions == ()
