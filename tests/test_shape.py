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
