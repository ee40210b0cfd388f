"""The engine: topological order, accumulation, freeing the graph, no_grad, errors."""
import threading

import numpy as np
import pytest

import minigrad as mg


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
