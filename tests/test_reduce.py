"""Reductions: sum, mean, var, max over every kind of axis argument."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.ops import reduce
from oracle import check_grad, check_op, randn, requires_torch, torch

AXES = [None, 0, 1, -1, (0, 2), (0, 1, 2)]


def _torch_dim(axis):
    return tuple(range(3)) if axis is None else axis


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "var", "var_unbiased", "max"])
def test_reduction_gradients(op, axis, keepdims):
    x = randn(2, 3, 4, seed=6)
    if op == "var_unbiased":
        check_grad(lambda t: t.var(axis=axis, keepdims=keepdims, unbiased=True), x)
    else:
        check_grad(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), x)


@requires_torch
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_pytorch(axis, keepdims):
    x = randn(2, 3, 4, seed=7)
    dim = _torch_dim(axis)
    check_op(lambda t: t.sum(axis=axis, keepdims=keepdims), lambda t: t.sum(dim=dim, keepdim=keepdims), x)
    check_op(lambda t: t.mean(axis=axis, keepdims=keepdims), lambda t: t.mean(dim=dim, keepdim=keepdims), x)
    check_op(lambda t: t.var(axis=axis, keepdims=keepdims),
             lambda t: t.var(dim=dim, keepdim=keepdims, unbiased=False), x)
    check_op(lambda t: t.var(axis=axis, keepdims=keepdims, unbiased=True),
             lambda t: t.var(dim=dim, keepdim=keepdims, unbiased=True), x)
    check_op(lambda t: t.max(axis=axis, keepdims=keepdims), lambda t: t.amax(dim=dim, keepdim=keepdims), x)


@requires_torch
def test_max_shares_the_gradient_between_ties_like_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    check_op(lambda t: t.max(axis=1), lambda t: t.amax(dim=1), x)
    check_op(lambda t: t.max(), lambda t: t.amax(), x)


def test_var_is_biased_by_default_as_numpy_and_tf_moments():
    x = randn(10, seed=8)
    assert mg.tensor(x).var().item() == pytest.approx(np.var(x))
    assert mg.tensor(x).var(unbiased=True).item() == pytest.approx(np.var(x, ddof=1))


def test_sum_of_a_scalar():
    x = mg.tensor(3.0, dtype=mg.float64, requires_grad=True)
    x.sum().backward()
    assert x.grad.item() == 1.0


@pytest.mark.parametrize("axis", [3, -4, (0, 0)])
def test_bad_axis_names_the_op(axis):
    with pytest.raises(ValueError, match="sum: axis"):
        mg.tensor(np.zeros((2, 3, 4))).sum(axis=axis)


def test_an_axis_out_of_range_is_an_index_error_too_as_in_pytorch():
    with pytest.raises(IndexError, match=r"mean: axis 3 is out of range for a tensor with 3 dimensions "
                                         r"\(expected an axis in \[-3, 2\]\)"):
        mg.zeros(2, 3, 4).mean(axis=3)
    with pytest.raises(TypeError, match=r"sum: axis must be an int or a tuple of ints, got 1.5"):
        mg.zeros(2, 3).sum(axis=1.5)


# ----- var's correction, and its edge cases as PyTorch has them -------------------------

def _var(t, axis=None, keepdims=False, **options):
    return reduce.Var.apply(t, axis=axis, keepdims=keepdims, **options)


def _torch_var(t, axis=None, keepdims=False, correction=None):
    return torch.var(t, dim=axis, keepdim=keepdims, correction=correction)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("correction", [0, 1, 1.5, -1])
def test_var_with_correction_gradients(axis, keepdims, correction):
    check_grad(lambda t: _var(t, axis, keepdims, correction=correction), randn(3, 4, 5, seed=20))


@requires_torch
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("correction", [0, 1, 2, 2.5, -1])
def test_var_with_correction_matches_pytorch(axis, keepdims, correction):
    x = randn(3, 4, 5, seed=21)
    check_op(lambda t: _var(t, axis, keepdims, correction=correction),
             lambda t: _torch_var(t, axis, keepdims, correction=correction), x)


def test_correction_overrides_unbiased():
    x = mg.tensor(randn(10, seed=22))
    assert _var(x, unbiased=True, correction=0).item() == pytest.approx(np.var(x.numpy()))
    assert _var(x, unbiased=False, correction=1).item() == pytest.approx(np.var(x.numpy(), ddof=1))
    assert _var(x, unbiased=True, correction=None).item() == pytest.approx(np.var(x.numpy(), ddof=1))
    with pytest.raises(TypeError, match="var: correction must be an int or a float, got str"):
        _var(x, correction="1")


# (name, array, axis, correction): where n - correction <= 0 PyTorch gives inf, or nan for a group
# of equal values, and gradients of +-inf or nan, with a rule of its own over the whole tensor;
# over an empty group nan. A NumPy warning (0 / 0) counts as a failure.
EDGES = [
    ("one-per-group-unbiased", [[1.0], [5.0]], 1, 1),
    ("one-element-unbiased", [5.0], None, 1),
    ("one-element-2d-unbiased", [[5.0]], None, 1),
    ("correction-equals-n", [[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]], 1, 3),
    ("correction-above-n", [[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]], 1, 4),
    ("correction-equals-n-all-axes", [[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]], (0, 1), 6),
    ("whole-tensor-correction-equals-n", [[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]], None, 6),
    ("whole-tensor-correction-above-n", [[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]], None, 7),
    ("whole-tensor-with-ties", [2.0, 2.0], None, 2),
    ("nan-input", [[1.0, np.nan]], 1, 2),
    ("empty-axis", np.zeros((0, 3)), 0, 1),
    ("empty-axis-biased", np.zeros((0, 3)), 0, 0),
    ("empty-axis-negative-correction", np.zeros((0, 3)), 0, -1),
    ("empty-output", np.zeros((0, 3)), 1, 1),
    ("empty-whole", np.zeros((0, 3)), None, 1),
    ("0d-unbiased", 3.0, None, 1),
    ("0d-axis-0-unbiased", 3.0, 0, 1),
    ("0d-axis-minus-1-biased", 3.0, -1, 0),
]


@requires_torch
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.filterwarnings("ignore:var... degrees of freedom:UserWarning")
@pytest.mark.parametrize("name,array,axis,correction", EDGES, ids=[e[0] for e in EDGES])
def test_var_edge_cases_match_pytorch(name, array, axis, correction):
    x = np.asarray(array, dtype=np.float64)
    upstream = np.asarray(_var(mg.tensor(x), axis, correction=correction).numpy())
    check_op(lambda t: _var(t, axis, correction=correction),
             lambda t: _torch_var(t, axis, correction=correction), x)
    assert upstream.shape == tuple(_torch_var(torch.tensor(x), axis, correction=correction).shape)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_var_where_nothing_is_left_to_divide_by_and_its_zero_upstream():
    """inf * 0 is nan, as PyTorch's 2 / 0 * grad * (x - mean), without NumPy's warning."""
    x = mg.tensor([[1.0, 2.0], [3.0, 3.0]], dtype=mg.float64, requires_grad=True)
    y = _var(x, 1, correction=2)
    np.testing.assert_array_equal(y.numpy(), [np.inf, np.nan])
    y.backward(mg.tensor([0.0, 1.0], dtype=mg.float64))
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 2), np.nan))


@requires_torch
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("axis", [0, None])
def test_mean_of_an_empty_group_is_nan_as_pytorch(axis):
    check_op(lambda t: t.mean(axis=axis), lambda t: t.mean(dim=axis) if axis is not None else t.mean(),
             np.zeros((0, 3)))


# ----- 0-d tensors and empty tensors ------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("axis", [0, -1, (0,), None])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "var", "max"])
def test_reductions_of_a_0d_tensor_as_pytorch(op, axis, keepdims):
    """A 0-d tensor has one axis to name, 0 or -1, and the result is 0-d (torch.sum(torch.tensor(3.), dim=0))."""
    torch_op = {"sum": "sum", "mean": "mean", "var": "var", "max": "amax"}[op]
    options = {"correction": 0} if op == "var" else {}

    def theirs(t):
        if axis is None:
            return getattr(torch, torch_op)(t, **options)
        return getattr(torch, torch_op)(t, dim=axis, keepdim=keepdims, **options)

    mine = (lambda t: _var(t, axis, keepdims, correction=0)) if op == "var" else (
        lambda t: getattr(t, op)(axis=axis, keepdims=keepdims))
    check_op(mine, theirs, np.array(3.0))
    check_grad(mine, np.array(3.0))
    assert mine(mg.tensor(3.0)).shape == ()


@pytest.mark.parametrize("op", ["sum", "mean", "var", "max"])
@pytest.mark.parametrize("axis", [1, -2, (0, -1)])
def test_other_axes_of_a_0d_tensor_name_the_op(op, axis):
    with pytest.raises((IndexError, ValueError), match=f"{op}: axis"):
        getattr(mg.tensor(3.0), op)(axis=axis)
    with pytest.raises(IndexError, match=r"sum: axis 1 is out of range for a tensor with 0 dimensions "
                                         r"\(expected an axis in \[-1, 0\]\)"):
        mg.tensor(3.0).sum(axis=1)


@pytest.mark.parametrize("make", [lambda: mg.zeros(0).max(), lambda: mg.zeros(0, 3).max(),
                                  lambda: mg.max(mg.zeros(2, 0))])
def test_max_of_an_empty_tensor_is_an_error(make):
    with pytest.raises(ValueError, match=r"max: cannot take the maximum of an empty tensor \(shape \(\d?,? ?\d?\)"):
        make()
    with pytest.raises(RuntimeError, match="max: cannot take the maximum of an empty tensor"):
        make()  # PyTorch raises RuntimeError


def test_max_over_an_empty_axis_is_an_error_but_empty_groups_of_a_full_axis_are_not():
    with pytest.raises(IndexError, match=r"max: cannot reduce over axis 0, of size 0 \(tensor of shape \(0, 3\)\): "
                                         r"a group of no elements has no maximum"):
        mg.zeros(0, 3).max(axis=0)
    x = mg.zeros(0, 3, requires_grad=True)
    y = x.max(axis=1)  # as torch.amax(torch.zeros(0, 3), dim=1): no groups, each of 3 elements
    assert y.shape == (0,)
    y.sum().backward()
    assert x.grad.shape == (0, 3)


@requires_torch
@pytest.mark.parametrize("shape,axis", [((2, 5), None), ((2, 5), 1), ((2, 5), 0), ((4,), -1), ((), None),
                                        ((), 0), ((), -1), ((0, 3), 1)])
def test_argmax_as_pytorch(shape, axis):
    values = np.random.default_rng(23).permutation(int(np.prod(shape))).reshape(shape).astype(np.float64)
    mine = reduce.argmax(values, axis)
    theirs = torch.argmax(torch.tensor(values), dim=axis)
    assert isinstance(mine, np.ndarray) and mine.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(mine, theirs.numpy())


@pytest.mark.parametrize("shape,axis,message", [
    ((0,), None, r"argmax: cannot take the largest element of an empty tensor \(shape \(0,\)\)"),
    ((0, 3), 0, r"argmax: cannot reduce over axis 0, of size 0 \(tensor of shape \(0, 3\)\): "
                r"a group of no elements has no largest element"),
    ((), 1, r"argmax: axis 1 is out of range for a tensor with 0 dimensions"),
])
def test_argmax_errors(shape, axis, message):
    with pytest.raises(IndexError, match=message):  # PyTorch raises IndexError
        reduce.argmax(np.zeros(shape), axis)
    with pytest.raises(TypeError, match=r"argmax: axis must be an int or None, got \(0, 1\)"):
        reduce.argmax(np.zeros((2, 3)), (0, 1))
