"""Softmax, log-softmax, cross-entropy and MSE against PyTorch and finite differences, and their errors."""
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.loss import CrossEntropy, LogSoftmax, MSELoss, Softmax
from oracle import check_grad, check_op, randn, requires_torch, torch

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("node, torch_name", [(Softmax, "softmax"), (LogSoftmax, "log_softmax")])
@pytest.mark.parametrize("shape, axis", [((3, 4), -1), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1), ((5,), 0)])
def test_softmax_and_log_softmax_match_torch_and_finite_differences(node, torch_name, shape, axis):
    x = 3 * randn(*shape, seed=1)
    mine = lambda x: node.apply(x, axis=axis)
    theirs = lambda x: getattr(torch.nn.functional, torch_name)(x, dim=axis)
    check_op(mine, theirs, x)
    check_grad(mine, x)


@pytest.mark.parametrize("node, torch_name", [(Softmax, "softmax"), (LogSoftmax, "log_softmax")])
def test_softmax_of_huge_logits_stays_finite(node, torch_name):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    mine = lambda x: node.apply(x, axis=1)
    theirs = lambda x: getattr(torch.nn.functional, torch_name)(x, dim=1)
    check_op(mine, theirs, x)


def probabilities(n, classes, seed):
    """Rows of class probabilities (each sums to 1), as a softmax of random scores."""
    scores = np.exp(randn(n, classes, seed=seed))
    return scores / scores.sum(axis=1, keepdims=True)


def cross_entropy_pair(reduction):
    return (lambda logits, target: CrossEntropy.apply(logits, target, reduction=reduction),
            lambda logits, target: torch.nn.functional.cross_entropy(logits, target, reduction=reduction))


TARGETS = {  # name: a target for logits of shape (4, 5)
    "indices": lambda: np.array([0, 4, 2, 2]),
    "int32-indices": lambda: np.array([3, 1, 0, 4], dtype=np.int32),
    "probabilities": lambda: probabilities(4, 5, seed=2),
    "one-hot": lambda: np.eye(5)[[1, 0, 4, 1]],
    "unnormalised": lambda: np.abs(randn(4, 5, seed=3)),  # soft labels that need not sum to 1
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", list(TARGETS))
def test_cross_entropy_matches_torch_and_finite_differences(target_kind, reduction):
    logits, target = 2 * randn(4, 5, seed=1), TARGETS[target_kind]()
    mine, theirs = cross_entropy_pair(reduction)
    if target_kind == "int32-indices":  # torch takes int64 labels only; minigrad any integer type
        theirs = lambda logits, target, theirs=theirs: theirs(logits, target.long())
    check_op(mine, theirs, logits, target)
    check_grad(mine, logits, target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target", [np.array([0, 1, 2]), np.eye(3)[[2, 0, 1]]], ids=["indices", "one-hot"])
def test_cross_entropy_of_huge_logits_is_finite_and_matches_torch(target, reduction):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [1e4, 1e4, -1e4]])
    mine, theirs = cross_entropy_pair(reduction)
    check_op(mine, theirs, logits, target)
    tensor = mg.tensor(logits.astype(np.float32), requires_grad=True)
    loss = mine(tensor, mg.tensor(target if target.ndim == 1 else target.astype(np.float32)))
    loss.sum().backward()
    assert np.isfinite(loss.numpy()).all() and np.isfinite(tensor.grad.numpy()).all()


@requires_torch
def test_cross_entropy_float32_batch_matches_torch():
    logits, target = randn(64, 10, seed=1).astype(np.float32), np.random.default_rng(2).integers(0, 10, 64)
    loss = CrossEntropy.apply(mg.tensor(logits), mg.tensor(target))
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(target))
    assert loss.dtype == mg.float32 and loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-6)


def apply_cross_entropy(logits, target, reduction="mean"):
    return CrossEntropy.apply(mg.tensor(logits), mg.tensor(target), reduction=reduction)


LOGITS = randn(4, 3, seed=1)


@pytest.mark.parametrize("logits, target, error, message", [
    (LOGITS, np.array([0.0, 1.0, 2.0, 1.0]), TypeError,
     r"cross_entropy: a float64 target must be class probabilities of the logits' shape \(4, 3\), "
     r"got \(4,\) \(class indices must be integers; or pass \(N, C\) class probabilities\)"),
    (LOGITS, np.array([0, 1, 3, 1]), ValueError,
     r"cross_entropy: class indices must be in \[0, 3\) for 3 classes, got labels from 0 to 3"),
    (LOGITS, np.array([0, -1, 2, 1]), ValueError, r"must be in \[0, 3\).*got labels from -1 to 2"),
    (LOGITS, np.array([0, 1, 2]), ValueError,
     r"cross_entropy: integer class indices must have shape \(4,\), one per row of logits \(4, 3\), got \(3,\)"),
    (LOGITS, np.array([[0], [1], [2], [1]]), ValueError, r"integer class indices must have shape \(4,\).*got \(4, 1\)"),
    (LOGITS, probabilities(4, 4, seed=2), ValueError,
     r"cross_entropy: a float64 target must be class probabilities of the logits' shape \(4, 3\), got \(4, 4\)$"),
    (LOGITS, probabilities(4, 3, seed=2).astype(np.float32), TypeError,
     r"cross_entropy: inputs must have one dtype, got logits float64, target float32"),
    (LOGITS, np.array([True, False, True, True]), TypeError,
     r"cross_entropy: target must be integer class indices \(N,\) or float class probabilities \(N, C\), "
     r"got dtype bool"),
    (randn(3, seed=1), np.array([0]), ValueError, r"cross_entropy: expected logits of shape \(N, C\), got \(3,\)"),
    (randn(2, 3, 4, seed=1), np.array([0, 1]), ValueError, r"expected logits of shape \(N, C\), got \(2, 3, 4\)"),
    (np.ones((4, 3), dtype=np.int64), np.array([0, 1, 2, 1]), TypeError,
     r"cross_entropy: logits must be floating-point, got int64"),
])
def test_cross_entropy_errors(logits, target, error, message):
    with pytest.raises(error, match=message):
        apply_cross_entropy(logits, target)


@pytest.mark.parametrize("node, op", [(CrossEntropy, "cross_entropy"), (MSELoss, "mse_loss")])
def test_losses_reject_an_unknown_reduction(node, op):
    with pytest.raises(ValueError, match=rf"{op}: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        node(reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
def test_mse_loss_matches_torch_and_finite_differences(shape, reduction):
    arrays = randn(*shape, seed=1), randn(*shape, seed=2)
    mine = lambda input, target: MSELoss.apply(input, target, reduction=reduction)
    theirs = lambda input, target: torch.nn.functional.mse_loss(input, target, reduction=reduction)
    check_op(mine, theirs, *arrays)
    check_grad(mine, *arrays)


@pytest.mark.parametrize("input_shape, target_shape", [((3, 1), (3,)), ((3,), (4,)), ((2, 3), (3, 2))])
def test_mse_loss_needs_equal_shapes(input_shape, target_shape):
    message = f"mse_loss: input and target must have the same shape, got {input_shape} and {target_shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        MSELoss.apply(mg.tensor(randn(*input_shape)), mg.tensor(randn(*target_shape)))


def test_mse_loss_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match=r"mse_loss: inputs must have one dtype, got input float64, target float32"):
        MSELoss.apply(mg.tensor(randn(3)), mg.tensor(randn(3).astype(np.float32)))
