"""Shape nodes: reshape, flatten, transpose, indexing, casts."""
import numpy as np
import pytest

import minigrad as mg
from oracle import check_grad, check_op, randn, requires_torch, torch

CASES = [
    ("reshape", lambda t: t.reshape(4, 6), lambda t: t.reshape(4, 6)),
    ("reshape_tuple", lambda t: t.reshape((-1, 3)), lambda t: t.reshape((-1, 3))),
    ("view", lambda t: t.view(2, 12), lambda t: t.view(2, 12)),
    ("flatten", lambda t: t.flatten(), lambda t: t.flatten()),
    ("flatten_1", lambda t: t.flatten(1), lambda t: t.flatten(1)),
    ("flatten_0_1", lambda t: t.flatten(0, 1), lambda t: t.flatten(0, 1)),
    ("T", lambda t: t.T, lambda t: t.permute(2, 1, 0)),
    ("transpose_swap", lambda t: t.transpose(0, 2), lambda t: t.transpose(0, 2)),
    ("transpose_perm", lambda t: t.transpose(1, 2, 0), lambda t: t.permute(1, 2, 0)),
    ("permute", lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1)),
    ("index_int", lambda t: t[1], lambda t: t[1]),
    ("index_slice", lambda t: t[:, 1:3, ::2], lambda t: t[:, 1:3, ::2]),
    ("index_negative", lambda t: t[-1, :, -2], lambda t: t[-1, :, -2]),
    ("index_none_ellipsis", lambda t: t[None, ..., 0], lambda t: t[None, ..., 0]),
    ("index_array_repeats", lambda t: t[[0, 0, 1]], lambda t: t[[0, 0, 1]]),
    ("index_pairs", lambda t: t[np.array([0, 1, 1]), np.array([2, 0, 2])],
     lambda t: t[torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2])]),
    ("index_mask", lambda t: t[mg.tensor(np.arange(24).reshape(2, 3, 4) % 3 == 0)],
     lambda t: t[torch.tensor(np.arange(24).reshape(2, 3, 4) % 3 == 0)]),
]


@pytest.mark.parametrize("name,mg_fn,torch_fn", CASES, ids=[c[0] for c in CASES])
def test_shape_op_gradients(name, mg_fn, torch_fn):
    check_grad(mg_fn, randn(2, 3, 4, seed=9))


@requires_torch
@pytest.mark.parametrize("name,mg_fn,torch_fn", CASES, ids=[c[0] for c in CASES])
def test_shape_ops_match_pytorch(name, mg_fn, torch_fn):
    check_op(mg_fn, torch_fn, randn(2, 3, 4, seed=10))


def test_index_with_a_tensor_of_labels():
    probs = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    picked = probs[mg.arange(2), mg.tensor([2, 0])]
    np.testing.assert_array_equal(picked.numpy(), [2.0, 3.0])
    picked.sum().backward()
    np.testing.assert_array_equal(probs.grad.numpy(), [[0, 0, 1], [1, 0, 0]])


def test_cast_passes_the_gradient_back_in_the_input_dtype():
    x = mg.tensor(randn(3, seed=11), requires_grad=True)
    y = x.to(mg.float32)
    assert y.dtype == mg.float32
    (y * mg.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.dtype == mg.float64
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, 2\)"):
        mg.zeros(2, 3).reshape(4, 2)


def test_transpose_error():
    with pytest.raises(ValueError, match="transpose"):
        mg.zeros(2, 3, 4).transpose(0, 1, 1)
    with pytest.raises(ValueError, match="transpose"):
        mg.zeros(2, 3).transpose(0, 5)


def test_index_error_names_the_shape():
    with pytest.raises(IndexError, match=r"getitem: .*\(tensor of shape \(2, 3\)\)"):
        mg.zeros(2, 3)[5]


def test_flatten_error():
    with pytest.raises(ValueError, match="flatten"):
        mg.zeros(2, 3).flatten(1, 0)


# ----- mixed indexing, as PyTorch reads it ---------------------------------------------
# PyTorch applies ints, slices, None and Ellipsis first and then the index arrays; NumPy
# counts an int among the arrays, which moves the arrays' axes to the front where PyTorch
# keeps them in place. Each case: an index whose arrays are NumPy arrays (made tensors for
# both frameworks), and whether NumPy's own x[index] has another shape or order than PyTorch's.
I2, I3 = np.array([0, 2, 2]), np.array([1, 4, 4])  # repeated indices: their gradients add up
I0 = np.array([1, 0, 1])
MASK3 = np.array([True, False, True, True, False])
MASK2 = np.array([[False, True, False], [True, False, True]])
MASK_12_5 = np.zeros((12, 5), bool)
MASK_12_5[3, 1] = MASK_12_5[4, 4] = MASK_12_5[9, 0] = True
MIXED = [
    ("int-slice-step-array-slice", (1, slice(None), slice(3, 11, 2), I3, slice(0, 2)), True),
    ("slice-array-slice-int", (slice(None), I2, slice(None), 1), True),
    ("array-slice-int", (np.array([1, 0]), slice(None), 1), False),
    ("int-array", (1, I2), False),
    ("int-slice-array", (1, slice(None), I3), True),
    ("slice-int-slice-array", (slice(None), 1, slice(None), I3), True),
    ("slice-int-slice-array-int", (slice(None), 1, slice(None), I3, 2), True),
    ("int-slice-array-slice-int", (1, slice(None), I3, slice(None), 1), True),
    ("int-int-array-slice-int", (1, 2, I3, slice(None), 1), False),
    ("array-int-array", (I0, 1, I3), False),
    ("array-slice-array", (I0, slice(None), I3), False),
    ("adjacent-arrays", (slice(None), I2, I3), False),
    ("arrays-apart", (slice(None), I2, slice(None), I3), False),
    ("step-array-slice-array", (slice(None, None, 2), I2, slice(1, 3), I3), False),
    ("ellipsis-array", (Ellipsis, np.array([3, 0, 3])), False),
    ("ellipsis-array-int", (Ellipsis, I3, 1), False),
    ("int-ellipsis-array", (1, Ellipsis, np.array([3, 0, 3])), True),
    ("array-ellipsis-array", (I0, Ellipsis, np.array([0, 3, 3])), False),
    ("none-array-none-slice-array", (None, I0, None, slice(None), I3), False),
    ("array-none-array", (I0, None, I2), False),
    ("slice-array-none-int", (slice(None), I2, None, 1), True),
    ("2d-arrays-apart", (np.array([[1, 0], [0, 1]]), slice(None), np.array([[0, 3], [3, 1]])), False),
    ("2d-array-last", (slice(None), slice(None), slice(None), np.array([[0, 3], [3, 1]])), False),
    ("negative-ints", (-1, I2, slice(None), slice(None), -1), False),
    ("0d-array-as-int-first", (slice(None), np.array(1), slice(None), I3), True),
    ("0d-array-as-int-last", (slice(None), I2, slice(None), np.array(1)), True),
    ("mask", (slice(None), slice(None), slice(None), MASK3), False),
    ("array-slice-mask", (slice(None), I2, slice(None), MASK3), False),
    ("int-mask-int", (1, slice(None), slice(None), MASK3, 0), True),
    ("2d-mask-int", (MASK2, 1), False),
    ("int-2d-mask-int", (1, slice(None), MASK_12_5, 1), True),
    ("int-ellipsis-2d-mask-int", (0, Ellipsis, MASK_12_5, 0), True),
    ("2d-mask-slice-array", (MASK2, slice(None), np.array([1, 2, 3])), False),
    ("true-after-array", (slice(None), I2, True), False),
    ("true-int", (slice(None), I2, slice(None), True, 1), False),
    ("0d-true-array", (slice(None), I2, slice(None), slice(None), np.array(True)), False),
    ("false", (False,), False),
    ("lists", (slice(None), [0, 2], slice(None), [1, 4]), False),
]


def _as(index, make):
    return tuple(make(part) if isinstance(part, np.ndarray) else part for part in index)


@pytest.mark.parametrize("name,index", [c[:2] for c in MIXED if c[2]], ids=[c[0] for c in MIXED if c[2]])
def test_mixed_indexing_gradients(name, index):
    """Finite differences where PyTorch's reading differs from NumPy's (PyTorch checks all cases below)."""
    check_grad(lambda t: t[_as(index, mg.tensor)], randn(2, 3, 12, 5, 4, seed=12))


@requires_torch
@pytest.mark.parametrize("name,index,numpy_differs", MIXED, ids=[c[0] for c in MIXED])
def test_mixed_indexing_matches_pytorch(name, index, numpy_differs):
    x = randn(2, 3, 12, 5, 4, seed=13)
    check_op(lambda t: t[_as(index, mg.tensor)], lambda t: t[_as(index, torch.tensor)], x)
    # the table's claim: these are the cases where NumPy itself reads the index otherwise
    theirs = torch.tensor(x)[_as(index, torch.tensor)].numpy()
    numpys = x[index]
    assert numpy_differs == (numpys.shape != theirs.shape or not np.array_equal(numpys, theirs))


@requires_torch
def test_mixed_indexing_matches_pytorch_with_numpy_arrays_in_the_index():
    x = randn(2, 3, 12, 5, 4, seed=14)
    index = (slice(None), I2, slice(None), 1)
    check_op(lambda t: t[index], lambda t: t[_as(index, torch.tensor)], x)


@pytest.mark.parametrize("index,message", [
    ((0, 0, 0, 0), r"too many indices: 4 for a tensor of 3 dimensions"),
    ((Ellipsis, 0, Ellipsis), r"an index can only have a single ellipsis"),
    ((slice(None), 7), r"index 7 is out of bounds for axis 1 with size 3"),
    ((slice(None), [0, 5]), r"index 5 is out of bounds"),
    ((np.array([1.0]),), r"index arrays must hold integers or booleans, got one of dtype float64"),
    (("a",), r"only integers, slices, None, Ellipsis and integer or boolean arrays are valid indices, got str"),
    ((1.5,), r"valid indices, got float 1.5"),
    ((np.ones(3, bool),), r"the boolean mask of shape \(3,\) does not match the sizes \(2,\) of the axis 0"),
    ((0, np.ones((3, 5), bool)), r"mask of shape \(3, 5\) does not match the sizes \(3, 4\) of the axes 1 to 2"),
    ((np.array([0, 1]), slice(None), np.array([0, 1, 2])), r"shape mismatch"),
])
def test_index_errors_name_the_op_and_the_shape(index, message):
    with pytest.raises(IndexError, match=r"getitem: .*" + message + r".*\(tensor of shape \(2, 3, 4\)\)"):
        mg.zeros(2, 3, 4)[index]


def test_an_empty_list_indexes_nothing():
    x = mg.tensor(randn(2, 3, seed=15), requires_grad=True)
    y = x[:, []]
    assert y.shape == (2, 0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3)))


def test_split_index_reads_ints_first():
    """x[:, idx, :, 0] is x[:, :, :, 0][:, idx]: the int goes to the basic step."""
    basic, advanced = mg.ops.shape.split_index((slice(None), I2, slice(None), 0), (2, 3, 12, 5))
    assert basic == (slice(None), slice(None), slice(None), 0)
    assert len(advanced) == 3 and advanced[1] is I2
    assert mg.ops.shape.split_index((0, slice(1, 3)), (2, 3)) == ((0, slice(1, 3)), None)


# ----- backend.add_at: the scatter behind indexing's gradient -------------------------------

def on(device, array, request):
    """``array`` on the device ("cpu": NumPy; "cuda": real CuPy or the stand-in)."""
    if device == "cpu":
        return np.array(array)
    return request.getfixturevalue("cupy").asarray(array)


def to_host(array):
    return array.get() if hasattr(array, "get") else array


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_add_at_sums_repeats_one_by_one_in_index_order(request, device):
    """Repeated places get their values added in index order, rounding after each: a loop's bits, on both backends."""
    rng = np.random.default_rng(3)
    place = rng.integers(0, 5, 3000)
    values = (rng.standard_normal(3000) * 10 ** rng.uniform(-4, 4, 3000)).astype(np.float32)
    expected = np.zeros(5, np.float32)
    for p, v in zip(place, values):
        expected[p] = np.float32(expected[p] + v)
    target = on(device, np.zeros(5, np.float32), request)
    mg.backend.add_at(target, on(device, place, request), on(device, values, request))
    np.testing.assert_array_equal(to_host(target), expected)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("view, index", [
    (lambda full: full[::2], (np.array([1, 1, 0, 2]), np.array([3, 3, 0, 3]))),  # a strided view
    (lambda full: full[1], (np.array([0, 3, 0]),)),  # a contiguous view
    (lambda full: full, (slice(None), np.array([2, 2, 2]))),  # a slice, then an array
    (lambda full: full, (np.arange(20).reshape(5, 4) % 3 == 0,)),  # a mask
    (lambda full: full, (np.array([], dtype=np.int64),)),  # nothing to add
], ids=["strided-view", "contiguous-view", "slice-and-array", "mask", "empty"])
def test_add_at_adds_into_a_view_and_keeps_what_was_there(request, device, view, index):
    base = np.arange(20.0).reshape(5, 4)
    places = view(np.arange(20).reshape(5, 4))[index]  # where each value goes in base, flattened
    values = 1.5 ** np.arange(places.size).reshape(places.shape)
    expected = base.copy().reshape(-1)
    for p, v in zip(places.reshape(-1), values.reshape(-1)):
        expected[p] += v
    full = on(device, base, request)
    device_index = tuple(part if isinstance(part, slice) else on(device, part, request) for part in index)
    mg.backend.add_at(view(full), device_index, on(device, values, request))
    np.testing.assert_array_equal(to_host(full), expected.reshape(5, 4))
