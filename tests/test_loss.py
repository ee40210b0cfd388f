"""Softmax, log-softmax, cross-entropy and MSE against PyTorch and finite differences, and their errors."""
import re
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
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
     r"cross_entropy: class indices must be in \[0, 3\) for 3 classes \(or be ignore_index=-100\), "
     r"got labels from 0 to 3"),
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


# ----- cross_entropy's weight, ignore_index and label_smoothing, against PyTorch -----------------

def class_weight(classes, seed=7):
    """Positive class weights, unequal enough that a wrong denominator shows."""
    return 0.2 + 2 * np.random.default_rng(seed).random(classes)


def cross_entropy_with(weight, **options):
    """F.cross_entropy and PyTorch's with the same constant class weights (or none) and options."""
    mine_weight = None if weight is None else mg.tensor(weight)
    their_weight = None if weight is None else torch.tensor(weight)
    return (lambda logits, target: F.cross_entropy(logits, target, weight=mine_weight, **options),
            lambda logits, target: torch.nn.functional.cross_entropy(logits, target, weight=their_weight, **options))


INDEX_TARGETS = {  # name: (labels for logits of shape (5, 4), ignore_index)
    "nothing-ignored": (np.array([0, 3, 2, 2, 1]), -100),
    "default-ignored": (np.array([0, -100, 3, -100, 1]), -100),
    "a-class-ignored": (np.array([1, 3, 2, 1, 0]), 1),  # ignore_index naming a real class
    "negative-ignored": (np.array([-1, 3, 2, -1, 0]), -1),
}
SMOOTHINGS = [0.0, 0.3, 1.0]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("targets", list(INDEX_TARGETS))
@requires_torch
def test_cross_entropy_on_indices_with_every_option_matches_torch(targets, weighted, label_smoothing, reduction):
    logits = 2 * randn(5, 4, seed=1)
    labels, ignore_index = INDEX_TARGETS[targets]
    mine, theirs = cross_entropy_with(class_weight(4) if weighted else None, ignore_index=ignore_index,
                                      reduction=reduction, label_smoothing=label_smoothing)
    check_op(mine, theirs, logits, labels)
    check_grad(mine, logits, labels)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("target_kind", ["probabilities", "unnormalised"])
def test_cross_entropy_on_probabilities_with_every_option_matches_torch(target_kind, weighted, label_smoothing,
                                                                        reduction):
    """Gradients of logits, target and (given as an input here) weight, as PyTorch's."""
    logits = 2 * randn(4, 5, seed=1)
    target = TARGETS[target_kind]()
    options = dict(reduction=reduction, label_smoothing=label_smoothing, ignore_index=-1)  # negative: allowed
    if weighted:
        mine = lambda logits, target, weight: F.cross_entropy(logits, target, weight, **options)
        theirs = lambda logits, target, weight: torch.nn.functional.cross_entropy(logits, target, weight, **options)
        arrays = logits, target, class_weight(5)
    else:
        mine, theirs = cross_entropy_with(None, **options)
        arrays = logits, target
    check_op(mine, theirs, *arrays)
    check_grad(mine, *arrays)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["no-weight", "weight"])
@requires_torch
def test_cross_entropy_with_every_row_ignored_is_nan_mean_and_zero_gradient_as_torch(weighted, label_smoothing,
                                                                                     reduction):
    logits, labels = randn(3, 4, seed=1), np.array([-100, -100, -100])
    mine, theirs = cross_entropy_with(class_weight(4) if weighted else None, reduction=reduction,
                                      label_smoothing=label_smoothing)
    tensor = mg.tensor(logits, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch says nothing about the 0/0, neither does minigrad
        loss = mine(tensor, mg.tensor(labels))
        loss.backward(mg.ones(*loss.shape, dtype=mg.float64))
    expected = theirs(torch.tensor(logits), torch.tensor(labels))
    np.testing.assert_array_equal(loss.numpy(), expected.numpy())  # NaN for "mean", 0 otherwise
    assert np.isnan(loss.numpy()).all() == (reduction == "mean")
    np.testing.assert_array_equal(tensor.grad.numpy(), np.zeros((3, 4)))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("finite", [True, False], ids=["finite-logits", "inf-and-nan-logits"])
@requires_torch
def test_an_ignored_row_adds_nothing_and_passes_no_gradient_back_as_in_torch(finite, label_smoothing):
    """Its term is 0 even for non-finite logits; the gradient is 0 even for a NaN upstream value (with
    non-finite logits the softmax's backward still spreads their NaN over the row, in PyTorch too)."""
    logits, labels, upstream = randn(3, 4, seed=1), np.array([2, -100, 0]), np.array([1.0, np.nan, -2.0])
    if not finite:
        logits[1] = [np.inf, -np.inf, np.nan, 1.0]
    mine, theirs = cross_entropy_with(class_weight(4), reduction="none", label_smoothing=label_smoothing)
    tensor, their_tensor = mg.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    losses, expected = mine(tensor, mg.tensor(labels)), theirs(their_tensor, torch.tensor(labels))
    losses.backward(mg.tensor(upstream))
    expected.backward(torch.tensor(upstream))
    assert losses.numpy()[1] == 0 and np.isfinite(losses.numpy()).all()
    np.testing.assert_allclose(losses.numpy(), expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(tensor.grad.numpy(), their_tensor.grad.numpy(), rtol=1e-12, atol=1e-15)
    if finite:
        np.testing.assert_array_equal(tensor.grad.numpy()[1], np.zeros(4))


def test_cross_entropy_takes_uint8_labels_with_a_negative_ignore_index():
    """MNIST's labels are uint8; comparing them with ignore_index=-100 must neither fail nor wrap around."""
    logits, labels = randn(4, 3, seed=1), np.array([0, 2, 1, 2], dtype=np.uint8)
    mine, theirs = cross_entropy_with(None, label_smoothing=0.1)
    check_op(mine, lambda logits, labels: theirs(logits, labels.long()), logits, labels)


@requires_torch
def test_cross_entropy_weight_may_be_an_array_or_a_list():
    """Made a tensor on the logits' device, as a target is: a list of floats is float32, as always."""
    logits, labels, weight = randn(4, 3, seed=1), np.array([0, 2, 1, 2]), class_weight(3)
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), torch.tensor(weight))
    for given in (weight, mg.tensor(weight)):
        np.testing.assert_allclose(F.cross_entropy(mg.tensor(logits), labels, given).numpy(), expected.numpy(),
                                   rtol=1e-12)
    in_float32 = F.cross_entropy(mg.tensor(logits.astype(np.float32)), labels, list(weight))
    np.testing.assert_allclose(in_float32.numpy(), expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@requires_torch
def test_cross_entropy_loss_module_takes_every_option_as_torch(reduction):
    logits, labels, weight = randn(5, 4, seed=1), np.array([0, 3, 1, 3, 2]), class_weight(4)
    options = dict(ignore_index=3, reduction=reduction, label_smoothing=0.2)
    ours, theirs = nn.CrossEntropyLoss(mg.tensor(weight), **options), torch.nn.CrossEntropyLoss(torch.tensor(weight), **options)
    tensor, their_tensor = mg.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    loss, expected = ours(tensor, mg.tensor(labels)), theirs(their_tensor, torch.tensor(labels))
    np.testing.assert_allclose(loss.numpy(), expected.detach().numpy(), rtol=1e-10)
    loss.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(tensor.grad.numpy(), their_tensor.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]  # a buffer, as in PyTorch
    assert list(nn.CrossEntropyLoss().state_dict()) == list(torch.nn.CrossEntropyLoss().state_dict()) == []
    assert repr(ours) == repr(theirs) == "CrossEntropyLoss()"


def test_cross_entropy_loss_module_weight_must_be_a_tensor():
    with pytest.raises(TypeError, match=r"cannot assign list as buffer 'weight' \(a Tensor or None expected\)"):
        nn.CrossEntropyLoss(weight=[1.0, 2.0])


PROBABILITIES = probabilities(4, 3, seed=2)
INDICES = np.array([0, 1, 2, 1])


@pytest.mark.parametrize("target, options, error, message", [
    (INDICES, dict(weight=np.ones(4)), ValueError,
     r"cross_entropy: weight must have shape \(3,\), one value per class of logits \(4, 3\), got \(4,\)"),
    (PROBABILITIES, dict(weight=np.ones((1, 3))), ValueError, r"weight must have shape \(3,\).*got \(1, 3\)"),
    (INDICES, dict(weight=np.ones(3, dtype=np.int64)), TypeError,
     r"cross_entropy: weight must be floating-point, got int64"),
    (PROBABILITIES, dict(weight=np.ones(3, dtype=np.float32)), TypeError,
     r"cross_entropy: inputs must have one dtype, got logits float64, weight float32"),
    (INDICES, dict(label_smoothing=1.5), ValueError, r"cross_entropy: label_smoothing must be in \[0, 1\], got 1.5"),
    (PROBABILITIES, dict(label_smoothing=-0.1), ValueError, r"label_smoothing must be in \[0, 1\], got -0.1"),
    (INDICES, dict(label_smoothing=float("nan")), ValueError, r"label_smoothing must be in \[0, 1\], got nan"),
    (INDICES, dict(label_smoothing="0.1"), TypeError,
     r"cross_entropy: label_smoothing must be a number in \[0, 1\], got '0.1' \(str\)"),
    (INDICES, dict(ignore_index=1.5), TypeError, r"cross_entropy: ignore_index must be an int, got 1.5 \(float\)"),
    (INDICES, dict(ignore_index=True), TypeError, r"ignore_index must be an int, got True \(bool\)"),
    (PROBABILITIES, dict(ignore_index=0), ValueError,
     r"cross_entropy: ignore_index is for class-index targets only, got ignore_index=0 with class "
     r"probabilities \(4, 3\); leave it negative"),
    (np.array([0, -100, 3, 1]), dict(), ValueError,  # an ignored row does not hide a bad label
     r"class indices must be in \[0, 3\) for 3 classes \(or be ignore_index=-100\), got labels from 0 to 3"),
    (np.array([0, -1, 2, 1]), dict(ignore_index=2), ValueError,
     r"\(or be ignore_index=2\), got labels from -1 to 1"),
])
def test_cross_entropy_option_errors(target, options, error, message):
    with pytest.raises(error, match=message):
        F.cross_entropy(mg.tensor(LOGITS), target, **options)


def test_cross_entropy_weight_with_indices_takes_no_gradient_as_torch():
    weight = mg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"cross_entropy: with class-index targets the loss has no gradient "
                                           r"for weight \(nor in PyTorch\); pass weight.detach\(\)"):
        F.cross_entropy(mg.tensor(LOGITS), INDICES, weight)
    assert F.cross_entropy(mg.tensor(LOGITS), INDICES, weight.detach()).shape == ()


# ----- the same on the GPU (the stand-in here): no waits for the device, labels checked later --------

def test_cross_entropy_options_on_the_gpu_equal_the_cpu_without_a_host_sync(standin):
    logits, labels, weight = randn(5, 4, seed=1), np.array([0, -100, 3, 1, 3]), class_weight(4)
    results = {}
    for device in ("cpu", "cuda"):
        tensor = mg.tensor(logits, device=device, requires_grad=True)
        before = standin._standin.syncs
        loss = F.cross_entropy(tensor, mg.tensor(labels, device=device), mg.tensor(weight, device=device),
                               label_smoothing=0.2)
        loss.backward()
        assert standin._standin.syncs == before, f"{device}: the host waited for the device"
        results[device] = loss.numpy(), tensor.grad.numpy()
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-12, atol=1e-15)


def test_a_bad_label_beside_ignored_ones_on_the_gpu_fails_at_the_next_copy(standin):
    logits = mg.randn(4, 3, device="cuda", requires_grad=True)
    assert np.isfinite(F.cross_entropy(logits, mg.tensor([0, -100, 2, -100], device="cuda")).item())
    loss = F.cross_entropy(logits, mg.tensor([0, -100, 3, 2], device="cuda"))
    loss.backward()
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\) for 3 classes \(or be "
                                         r"ignore_index=-100\) \(checked at the next copy to the host\)"):
        loss.item()


def test_cross_entropy_weight_must_be_on_the_logits_device(standin):
    logits = mg.randn(4, 3, device="cuda")
    with pytest.raises(RuntimeError, match=r"cross_entropy: weight is on cpu but logits are on cuda:0; move the "
                                           r"weight \(or the CrossEntropyLoss holding it\) with .to\('cuda:0'\)"):
        F.cross_entropy(logits, mg.tensor(INDICES, device="cuda"), mg.ones(3))
    loss = nn.CrossEntropyLoss(mg.ones(3)).to("cuda")  # the buffer moves with the module
    assert loss.weight.device == "cuda:0" and loss(logits, mg.tensor(INDICES, device="cuda")).device == "cuda:0"


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
