"""Tensor creation, dtypes, devices, conversion and the mg.NAME functions."""
import numpy as np
import pytest

import minigrad as mg
from oracle import requires_torch, torch


def test_python_floats_become_float32_and_ints_int64():
    assert mg.tensor(1.5).dtype == mg.float32
    assert mg.tensor([[1.0, 2.0]]).dtype == mg.float32
    assert mg.tensor([1, 2]).dtype == mg.int64
    assert mg.tensor(True).dtype == np.bool_


def test_arrays_keep_their_dtype_and_are_copied():
    source = np.arange(3, dtype=np.float64)
    t = mg.tensor(source)
    assert t.dtype == mg.float64
    source[0] = 42
    assert t.numpy()[0] == 0
    assert mg.tensor(np.arange(3, dtype=np.int32)).dtype == np.int32


@pytest.mark.parametrize("dtype", [mg.float64, np.float64, "float64"])
def test_dtype_argument_accepts_alias_type_and_name(dtype):
    assert mg.tensor([1, 2], dtype=dtype).dtype == mg.float64


def test_bad_data_is_a_type_error():
    with pytest.raises(TypeError, match="tensor\\(\\).*ragged"):
        mg.tensor([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match="tensor\\(\\).*holds strings"):
        mg.tensor("text")


@pytest.mark.parametrize("data, what", [
    (np.array([1, "a"], dtype=object), "dtype object, which holds Python objects"),
    (np.array([1.0, 2.0], dtype=object), "dtype object"),  # numbers, but in an object array: PyTorch refuses too
    ([1, "a"], "holds strings"),
    (["1.5", "2"], "holds strings"),
    (np.array(["a", "b"]), "holds strings"),
    (np.array([b"a"]), "holds byte strings"),
    ([1, None], "dtype object"),
    (np.array([1 + 2j]), "complex"),
])
def test_non_numbers_are_refused_with_a_type_error(data, what):
    with pytest.raises(TypeError, match="tensor\\(\\): cannot make a tensor.*" + what):
        mg.tensor(data)
    with pytest.raises(TypeError, match="tensor\\(\\): cannot make a tensor"):
        mg.tensor(data, dtype=mg.float32)  # NumPy would parse "1.5"; PyTorch does not
    if isinstance(data, np.ndarray):
        with pytest.raises(TypeError, match="cannot make a tensor"):
            mg.Tensor(data)
        with pytest.raises(TypeError, match="cannot make a tensor"):
            mg.tensor([1.0, 2.0]) + data


def test_attributes():
    t = mg.tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.device == "cpu"
    assert len(t) == 2 and t.numel() == 24 and t.size(1) == 3
    assert t.requires_grad is False and t.grad is None and t.is_leaf


def test_item_and_numpy():
    assert mg.tensor([[2.5]]).item() == 2.5
    with pytest.raises(ValueError, match="one element"):
        mg.tensor([1.0, 2.0]).item()
    assert isinstance(mg.tensor([1.0]).numpy(), np.ndarray)


def test_repr_looks_like_pytorch():
    assert repr(mg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mg.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert repr(mg.tensor([1.0], dtype=mg.float64)) == "tensor([1.], dtype=float64)"
    assert "grad_fn=<Mul>" in repr(mg.tensor([1.0], requires_grad=True) * 2)


def test_factories():
    assert mg.zeros(2, 3).shape == (2, 3) and mg.zeros((2, 3)).dtype == mg.float32
    assert mg.ones(4, dtype=mg.float64).numpy().sum() == 4
    assert mg.zeros_like(mg.tensor([1, 2])).dtype == mg.int64
    assert mg.ones_like(mg.tensor(np.zeros(3)), requires_grad=True).requires_grad
    np.testing.assert_array_equal(mg.arange(4).numpy(), [0, 1, 2, 3])
    assert mg.arange(4).dtype == mg.int64 and mg.arange(0.0, 1.0, 0.5).dtype == mg.float32
    assert mg.rand(1000).numpy().min() >= 0 and mg.rand(1000).numpy().max() < 1
    assert abs(mg.randn(10_000, dtype=mg.float64).numpy().std() - 1) < 0.05


def test_manual_seed_makes_random_tensors_reproducible():
    mg.manual_seed(7)
    first = mg.randn(5).numpy()
    mg.manual_seed(7)
    np.testing.assert_array_equal(first, mg.randn(5).numpy())
    assert not np.array_equal(first, mg.randn(5).numpy())


def test_scalar_operands_keep_the_tensor_dtype():
    t = mg.tensor([1.0, 2.0])
    assert (t * 2.5).dtype == mg.float32
    assert (2 - t).dtype == mg.float32
    assert (mg.tensor([1, 2]) * 2).dtype == mg.int64
    assert (mg.tensor([1, 2]) * 0.5).dtype == mg.float32
    assert (np.float64(2.0) * t).dtype == mg.float32  # NumPy scalar defers to Tensor
    np.testing.assert_allclose((2 ** mg.tensor([1.0, 3.0])).numpy(), [2.0, 8.0])


def test_comparisons_give_boolean_tensors_without_graph():
    t = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = t > 1.5
    assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal(mask.numpy(), [False, True, True])
    np.testing.assert_array_equal((t == mg.tensor([1.0, 0.0, 3.0])).numpy(), [True, False, True])
    assert (t <= 2).numpy().sum() == 2 and (t != 2).numpy().sum() == 2 and (t >= 3).numpy().sum() == 1
    assert {t: 1}[t] == 1  # hashable by identity
    assert (t == None) is False and (t != "a") is True  # noqa: E711  as PyTorch: not an elementwise comparison
    with pytest.raises(TypeError, match="'<' not supported"):
        t < None


def test_argmax():
    t = mg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]])
    np.testing.assert_array_equal(t.argmax(axis=1).numpy(), [1, 0])
    assert mg.argmax(t).item() == 3


def test_functions_mirror_methods():
    t = mg.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(mg.sum(t, axis=1).numpy(), t.sum(axis=1).numpy())
    np.testing.assert_allclose(mg.exp(t).numpy(), np.exp(t.numpy()), rtol=1e-6)
    assert mg.reshape(t, 3, 2).shape == (3, 2) and mg.flatten(t).shape == (6,)
    with pytest.raises(TypeError, match="mg.exp: expected a Tensor"):
        mg.exp(1.0)


def test_to_dtype_and_back():
    t = mg.tensor([1.0, 2.0], requires_grad=True)
    assert t.double().dtype == mg.float64 and t.to(mg.float64).dtype == mg.float64
    assert t.to("cpu") is t and t.float() is t


def test_cuda_without_a_gpu_is_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="needs CuPy"):
        mg.tensor([1.0]).to("cuda")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        mg.zeros(2, device="cuda")


def test_bad_device_name():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        mg.tensor([1.0], device="gpu")


def test_truth_value_of_many_elements_is_ambiguous():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(mg.tensor([1.0, 2.0]))
    assert bool(mg.tensor([1.0]))


# ----- conversions: np.asarray, float, int, index -------------------------------------------

@requires_torch
def test_float_int_and_index_of_one_element_tensors_as_torch():
    for values in ([2.7], [[-2.7]], 3, [True], -4.0):
        mine, theirs = mg.tensor(values), torch.tensor(values)
        assert float(mine) == float(theirs) and int(mine) == int(theirs)  # int() truncates towards zero
    assert [10, 20, 30][mg.tensor(1)] == 20 == [10, 20, 30][torch.tensor(1)]
    assert [10, 20, 30][mg.tensor([2])] == 30 and [10, 20, 30][mg.tensor(True)] == 20
    assert list(range(mg.tensor(3))) == [0, 1, 2]
    assert np.arange(10)[mg.tensor(4)] == 4


@pytest.mark.parametrize("values", [[1.0, 2.0], np.zeros((2, 1)), np.zeros(0)])
def test_float_and_int_of_several_elements_say_so(values):
    with pytest.raises(ValueError, match=r"float\(\): only a tensor with one element.*Python scalars.*shape"):
        float(mg.tensor(values))
    with pytest.raises(ValueError, match=r"int\(\): only a tensor with one element"):
        int(mg.tensor(values))


def test_only_one_element_integer_tensors_are_indices():
    with pytest.raises(TypeError, match="only integer tensors of a single element can be converted to an index, "
                                        "this one is float32 of shape \\(\\)"):
        [1, 2][mg.tensor(1.0)]
    with pytest.raises(TypeError, match="single element.*int64 of shape \\(2,\\)"):
        [1, 2][mg.tensor([0, 1])]


def test_np_asarray_is_the_cpu_tensors_array():
    t = mg.tensor([[1.0, 2.0]], requires_grad=True)
    array = np.asarray(t)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32 and array.shape == (1, 2)
    assert np.shares_memory(array, t.data)  # no copy, as t.numpy()
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert not np.shares_memory(np.array(t), t.data)  # np.array copies, as always
    np.testing.assert_array_equal(np.array([mg.tensor(1.0), mg.tensor(2.0)]), [1.0, 2.0])


def test_numpy_operands_still_defer_to_the_tensor():
    """__array__ must not let NumPy take over ``np_value * t``: the result is still a Tensor with a graph."""
    t = mg.tensor([1.0, 2.0], requires_grad=True)
    for left in (np.float32(2), np.float64(2), np.int64(2), np.array([2.0, 2.0], dtype=np.float32), np.array(2.0)):
        for result in (left * t, left + t, left - t, left / t, left ** t):
            assert isinstance(result, mg.Tensor) and result.requires_grad, type(left)
    assert isinstance(np.ones((2, 2), dtype=np.float32) @ t, mg.Tensor)
    assert isinstance(np.array([0.0, 5.0]) < t, mg.Tensor)


def test_np_asarray_of_a_gpu_tensor_says_to_copy_it_first(cupy):
    t = mg.tensor([1.0, 2.0], device="cuda")
    with pytest.raises(TypeError, match="can't convert a cuda:0 tensor to a NumPy array implicitly: use t.numpy"):
        np.asarray(t)
    assert float(t[1]) == 2.0 and int(t[0]) == 1 and [5, 6][mg.tensor(1, device="cuda")] == 6
    np.testing.assert_array_equal(np.asarray(t.cpu()), [1.0, 2.0])


# ----- type promotion, as PyTorch's ---------------------------------------------------------

DTYPES = [np.bool_, np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64]


def _torch_dtype(dtype):
    return getattr(torch, np.dtype(dtype).name if dtype is not np.bool_ else "bool")


@requires_torch
@pytest.mark.parametrize("left_shape, right_shape", [((2,), (2,)), ((2,), ()), ((), (2,)), ((), ())])
def test_result_type_of_two_tensors_is_torch_result_type(left_shape, right_shape):
    """Every pair of dtypes, with dimensions or 0-d (a 0-d tensor counts only through its category)."""
    for left in DTYPES:
        for right in DTYPES:
            a, b = np.ones(left_shape, dtype=left), np.ones(right_shape, dtype=right)
            expected = torch.result_type(torch.tensor(a), torch.tensor(b))
            assert mg.tensor(a, dtype=left).dtype == left
            got = mg.result_type(mg.tensor(a), mg.tensor(b))
            assert _torch_dtype(got) == expected, (left, right, left_shape, right_shape)


@requires_torch
@pytest.mark.parametrize("scalar", [True, 2, 2.5, -3])
def test_result_type_with_a_python_number_is_torch_result_type(scalar):
    for dtype in DTYPES:
        for shape in [(2,), ()]:
            tensor = np.ones(shape, dtype=dtype)
            expected = torch.result_type(torch.tensor(tensor), scalar)
            assert _torch_dtype(mg.result_type(mg.tensor(tensor), scalar)) == expected, (dtype, shape, scalar)



def test_result_type_takes_numpy_numbers_as_numbers_and_refuses_the_rest():
    ints = mg.tensor([1, 2], dtype=np.int32)
    assert mg.result_type(ints, np.int64(2)) == np.int32 and mg.result_type(ints, np.float64(0.5)) == mg.float32
    assert mg.result_type(mg.tensor([True]), np.bool_(True)) == np.bool_
    with pytest.raises(TypeError, match="result_type: expected Tensors or real numbers, got a str"):
        mg.result_type(ints, "2")


@requires_torch
@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "pow"])
@pytest.mark.parametrize("left, right", [(np.int64, np.float32), (np.float32, np.int64), (np.int32, np.int64),
                                         (np.bool_, np.int64), (np.float32, np.float64), (np.uint8, np.int8),
                                         (np.int64, np.int64), (np.bool_, np.float64), (np.int8, np.float16)])
def test_operators_compute_in_torchs_result_type(op, left, right):
    import operator
    fn = getattr(operator, op)
    a, b = np.array([1, 2, 3]).astype(left), np.array([3, 1, 2]).astype(right)
    if op == "sub" and np.bool_ in (left, right):
        pytest.skip("PyTorch refuses - on bool")
    mine, theirs = fn(mg.tensor(a), mg.tensor(b)), fn(torch.tensor(a), torch.tensor(b))
    assert _torch_dtype(mine.dtype) == theirs.dtype
    np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-3)
    for scalar in (2, 0.5) + ((True,) if op != "sub" else ()):  # and with Python numbers on either side
        for mine, theirs in [(fn(mg.tensor(a), scalar), fn(torch.tensor(a), scalar)),
                             (fn(scalar, mg.tensor(b)), fn(scalar, torch.tensor(b)))]:
            assert _torch_dtype(mine.dtype) == theirs.dtype, (op, left, right, scalar)
            np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-3)


def test_promotion_keeps_the_gradient_in_the_leafs_dtype():
    w = mg.tensor([1.0, 2.0], requires_grad=True)  # float32
    scale = mg.tensor(3.0, dtype=mg.float64)  # 0-d: does not make the result float64, as in PyTorch
    y = (w * scale + mg.tensor([1, 2])) * mg.tensor([1.0, 1.0], dtype=mg.float64)
    assert (w * scale).dtype == mg.float32 and y.dtype == mg.float64
    y.sum().backward()
    assert w.grad.dtype == mg.float32
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 3.0])


def test_promotion_and_in_place_arithmetic_on_the_gpu(cupy):
    """Casts and in-place writes stay on the tensor's device: the stand-in refuses NumPy operands."""
    ints, floats = mg.tensor([1, 2], device="cuda"), mg.tensor([0.5, 1.5], device="cuda")
    for result in (ints + floats, ints * 0.5, ints / 2, ints.exp(), mg.tensor([True], device="cuda") + floats):
        assert result.dtype == mg.float32 and result.device == "cuda:0"
    np.testing.assert_array_equal((ints + floats).numpy(), [1.5, 3.5])
    w = mg.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    with mg.no_grad():
        w -= 0.5 * mg.tensor([2.0, 2.0], device="cuda")
        w *= mg.tensor(2.0, dtype=mg.float64, device="cuda")
        w += np.array([1.0, 1.0])  # a host array moves to the device first
    assert w.device == "cuda:0" and w.requires_grad and w._version == 3
    np.testing.assert_array_equal(w.numpy(), [1.0, 3.0])
    np.testing.assert_array_equal(mg.tensor([-1.0, 0.5, 2.0], device="cuda").clip(1.0, 0.0).numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal((mg.tensor([2, 1, -1], device="cuda") ** mg.tensor([-1, -2, -3], device="cuda")).numpy(),
                                  [0, 1, -1])


# ----- in-place arithmetic ----------------------------------------------------------------

@pytest.mark.parametrize("update", [lambda w: w.__iadd__(1), lambda w: w.__isub__(1), lambda w: w.__imul__(2),
                                    lambda w: w.__itruediv__(2), lambda w: w.__ipow__(2)])
def test_in_place_arithmetic_on_a_leaf_that_requires_grad_needs_no_grad(update):
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                           "operation.*mg.no_grad"):
        update(w)
    assert w._version == 0
    with mg.no_grad():
        assert update(w) is w
    assert w.requires_grad and w.is_leaf and w._version == 1


@requires_torch
def test_in_place_under_no_grad_matches_torch_and_keeps_the_object():
    mine, theirs = mg.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    alias = mine
    with mg.no_grad():
        mine += 1
        mine -= mg.tensor([0.5, 0.25])
        mine *= 3
        mine /= mg.tensor([2.0, 4.0], dtype=mg.float64)  # float64 into float32: cast, as PyTorch
        mine **= 2
    with torch.no_grad():
        theirs += 1
        theirs -= torch.tensor([0.5, 0.25])
        theirs *= 3
        theirs /= torch.tensor([2.0, 4.0], dtype=torch.float64)
        theirs **= 2
    assert mine is alias and mine.dtype == mg.float32 and mine._version == theirs._version == 5
    np.testing.assert_allclose(mine.numpy(), theirs.detach().numpy(), rtol=1e-6)


def test_in_place_on_a_plain_tensor_changes_it_for_every_reference():
    counts = mg.zeros(3, dtype=mg.int64)
    alias = counts
    counts += 1
    counts *= mg.tensor([1, 2, 3])
    assert counts is alias and counts._version == 2
    np.testing.assert_array_equal(alias.numpy(), [1, 2, 3])
    floats = mg.tensor([1.0, 2.0])
    floats += mg.tensor([1, 1])  # an int operand: float32 result, cast into float32
    np.testing.assert_array_equal(floats.numpy(), [2.0, 3.0])


@requires_torch
def test_in_place_arithmetic_errors_as_torch():
    cases = [(lambda t: t.__iadd__(0.5), [1, 2], "result type float32 can't be cast to the desired output type int64"),
             (lambda t: t.__itruediv__(2), [1, 2], "/=: result type float32 can't be cast.*int64"),
             (lambda t: t.__iadd__(1), [True, False], "result type int64 can't be cast.*bool"),
             (lambda t: t.__iadd__(mg.tensor([[1.0, 2.0], [3.0, 4.0]])), [1.0, 2.0],
              r"output with shape \(2,\) doesn't match the broadcast shape \(2, 2\)")]
    for update, values, message in cases:
        t = mg.tensor(values)
        with pytest.raises(RuntimeError, match=message):
            update(t)
        assert t._version == 0
    theirs = torch.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        theirs += 0.5
    read_only = mg.Tensor(np.broadcast_to(np.float32(1), (3,)))
    with pytest.raises(RuntimeError, match=r"\+=: this tensor's array \(shape \(3,\)\) is read-only"):
        read_only += 1


@requires_torch
def test_in_place_on_a_computed_tensor_is_recorded_out_of_place():
    """PyTorch records the in-place op in the graph; minigrad rebinds the name to a new node: the same gradients."""
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 2
    before = h
    h += x ** 2
    h *= 3
    assert h is not before and h.requires_grad and before._version == 0
    np.testing.assert_array_equal(before.numpy(), [2.0, 4.0, 6.0])  # the old tensor is unchanged
    h.sum().backward()
    xt = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    ht = xt * 2
    ht += xt ** 2
    ht *= 3
    ht.sum().backward()
    np.testing.assert_allclose(h.numpy(), ht.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy())
    plain = mg.tensor([1.0, 1.0, 1.0])
    plain += x  # an operand that requires grad: recorded too, out of place
    assert plain.requires_grad and plain.grad_fn is not None


@requires_torch
def test_the_pytorch_beginners_loop_fits_a_line_as_torch_does():
    """w -= lr * w.grad under no_grad, w.grad = None: the same Parameter-like leaf every step."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20).astype(np.float32)
    y = (3 * x - 1 + 0.1 * rng.standard_normal(20)).astype(np.float32)
    mine = [mg.tensor(0.5, requires_grad=True), mg.tensor(0.0, requires_grad=True)]
    theirs = [torch.tensor(0.5, requires_grad=True), torch.tensor(0.0, requires_grad=True)]
    for lib, (w, b), inputs, targets in [(mg, mine, mg.tensor(x), mg.tensor(y)),
                                         (torch, theirs, torch.tensor(x), torch.tensor(y))]:
        first = w
        for _ in range(25):
            loss = ((w * inputs + b - targets) ** 2).mean()
            loss.backward()
            with lib.no_grad():
                w -= 0.1 * w.grad
                b -= 0.1 * b.grad
            w.grad = None
            b.grad = None
        assert w is first and w.requires_grad and w.is_leaf
    np.testing.assert_allclose([mine[0].item(), mine[1].item()], [theirs[0].item(), theirs[1].item()], rtol=1e-5)
    assert abs(mine[0].item() - 3) < 0.2 and abs(mine[1].item() + 1) < 0.2


def test_shape_errors_are_caught_as_numpy_and_pytorch_code_catches_them():
    """A shape that does not fit is a ValueError (NumPy's habit) and a RuntimeError (PyTorch's), naming the op."""
    import minigrad.nn.functional as F
    cases = [(lambda: mg.ones(2, 3) + mg.ones(4), "add"), (lambda: mg.ones(2, 3) @ mg.ones(2, 3), "matmul"),
             (lambda: mg.ones(6).reshape(4, 2), "reshape"), (lambda: F.linear(mg.ones(2, 3), mg.ones(4, 5)), "linear"),
             (lambda: F.mse_loss(mg.ones(3), mg.ones(4)), "mse_loss"),
             (lambda: F.cross_entropy(mg.ones(3, 4), mg.tensor([0, 1])), "cross_entropy"),
             (lambda: F.conv2d(mg.ones(1, 3, 8, 8), mg.ones(4, 1, 3, 3)), "conv2d: input has 3 channels")]
    for make, op in cases:
        for kind in (ValueError, RuntimeError, mg.errors.ShapeError):
            with pytest.raises(kind, match=op):
                make()
    with pytest.raises(IndexError):
        mg.ones(3)[5]
