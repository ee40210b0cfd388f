"""BatchNorm: forward, gradients and running statistics against PyTorch and finite differences."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.norm import BatchNorm
from oracle import check_grad, check_op, randn, requires_torch, torch

CASES = [  # input shape, with weight (gamma)?, with bias (beta)?
    pytest.param((2, 3), True, True, id="2d-batch-2"),
    pytest.param((5, 4), True, True, id="2d-odd"),
    pytest.param((5, 4), False, True, id="2d-no-weight"),
    pytest.param((5, 4), True, False, id="2d-no-bias"),
    pytest.param((5, 4), False, False, id="2d-neither"),
    pytest.param((2, 3, 2, 2), True, True, id="4d-batch-2"),
    pytest.param((3, 2, 3, 1), True, True, id="4d-odd"),
    pytest.param((1, 2, 3, 3), True, True, id="4d-batch-1"),
    pytest.param((3, 2, 1, 3), False, True, id="4d-no-weight"),
    pytest.param((3, 2, 1, 3), True, False, id="4d-no-bias"),
    pytest.param((3, 2, 1, 3), False, False, id="4d-neither"),
]


def buffers(channels, seed=5):
    """A running mean and a (positive) running variance, as float64 arrays."""
    return randn(channels, seed=seed), 0.5 + np.abs(randn(channels, seed=seed + 1))


def batch_norm_pair(with_weight, with_bias, training, mine_buffers, their_buffers, momentum=0.1, eps=1e-5):
    """The node and torch's batch_norm taking (x, [weight], [bias]) positionally, each with its own buffers."""
    def split(rest):
        rest = list(rest)
        weight = rest.pop(0) if with_weight else None
        bias = rest.pop(0) if with_bias else None
        return weight, bias

    def mine(x, *rest):
        running_mean, running_var = mine_buffers
        return BatchNorm.apply(x, *split(rest), running_mean=running_mean, running_var=running_var,
                               training=training, momentum=momentum, eps=eps)

    def theirs(x, *rest):
        running_mean, running_var = (None, None) if their_buffers is None else map(torch.from_numpy, their_buffers)
        return torch.nn.functional.batch_norm(x, running_mean, running_var, *split(rest),
                                              training=training, momentum=momentum, eps=eps)
    return mine, theirs


def case_arrays(shape, with_weight, with_bias):
    arrays = [3 + 2 * randn(*shape, seed=1)]
    if with_weight:
        arrays.append(randn(shape[1], seed=2))
    if with_bias:
        arrays.append(randn(shape[1], seed=3))
    return arrays


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape, with_weight, with_bias", CASES)
def test_batch_norm_matches_torch_and_finite_differences(shape, with_weight, with_bias, training):
    arrays = case_arrays(shape, with_weight, with_bias)
    mine_buffers, their_buffers = buffers(shape[1]), buffers(shape[1])
    mine, theirs = batch_norm_pair(with_weight, with_bias, training, mine_buffers, their_buffers)
    check_op(mine, theirs, *arrays)
    for m, t in zip(mine_buffers, their_buffers):  # updated once in training, untouched in eval
        np.testing.assert_allclose(m, t, rtol=1e-12)
    check_grad(mine, *arrays)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 3)])
def test_batch_norm_training_without_running_buffers(shape):
    arrays = case_arrays(shape, True, True)
    mine, theirs = batch_norm_pair(True, True, True, (None, None), None)
    check_op(mine, theirs, *arrays)
    check_grad(mine, *arrays)


@requires_torch
@pytest.mark.parametrize("momentum", [0.1, 0.01])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 5)])
def test_running_statistics_follow_torch_over_five_steps(shape, momentum):
    running_mean, running_var = np.zeros(shape[1]), np.ones(shape[1])
    their_mean, their_var = torch.zeros(shape[1], dtype=torch.float64), torch.ones(shape[1], dtype=torch.float64)
    for step in range(5):
        x = 1 + 3 * randn(*shape, seed=10 + step)
        BatchNorm.apply(mg.tensor(x), running_mean=running_mean, running_var=running_var,
                        training=True, momentum=momentum)
        torch.nn.functional.batch_norm(torch.tensor(x), their_mean, their_var, training=True, momentum=momentum)
    np.testing.assert_allclose(running_mean, their_mean.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(running_var, their_var.numpy(), rtol=1e-13)


def test_running_variance_is_unbiased_and_updated_in_place_in_its_own_dtype():
    x = randn(5, 2, seed=1)
    running_mean, running_var = np.zeros(2, dtype=np.float32), np.ones(2, dtype=np.float32)
    BatchNorm.apply(mg.tensor(x), running_mean=running_mean, running_var=running_var, training=True, momentum=0.5)
    assert running_mean.dtype == running_var.dtype == np.float32
    np.testing.assert_allclose(running_mean, 0.5 * x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(running_var, 0.5 + 0.5 * x.var(axis=0, ddof=1), rtol=1e-6)


def test_eval_normalises_with_the_running_statistics():
    x, weight, bias = randn(4, 3, 2, 2, seed=1), randn(3, seed=2), randn(3, seed=3)
    running_mean, running_var = buffers(3)
    before = running_mean.copy(), running_var.copy()
    out = BatchNorm.apply(mg.tensor(x), mg.tensor(weight), mg.tensor(bias),
                          running_mean=running_mean, running_var=running_var, training=False, eps=1e-3)
    per_channel = (1, 3, 1, 1)
    expected = ((x - running_mean.reshape(per_channel)) / np.sqrt(running_var.reshape(per_channel) + 1e-3)
                * weight.reshape(per_channel) + bias.reshape(per_channel))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(running_mean, before[0])
    np.testing.assert_array_equal(running_var, before[1])


@requires_torch
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(64, 16), (8, 4, 9, 9)])
def test_float32_forward_matches_torch(shape, training):
    x = (5 + 3 * randn(*shape, seed=1)).astype(np.float32)
    weight, bias = randn(shape[1], seed=2).astype(np.float32), randn(shape[1], seed=3).astype(np.float32)
    mine_buffers = [b.astype(np.float32) for b in buffers(shape[1])]
    their_buffers = [torch.tensor(b) for b in mine_buffers]
    out = BatchNorm.apply(mg.tensor(x), mg.tensor(weight), mg.tensor(bias), running_mean=mine_buffers[0],
                          running_var=mine_buffers[1], training=training)
    expected = torch.nn.functional.batch_norm(torch.tensor(x), *their_buffers, torch.tensor(weight),
                                              torch.tensor(bias), training=training)
    assert out.dtype == mg.float32
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    for m, t in zip(mine_buffers, their_buffers):
        assert m.dtype == np.float32
        np.testing.assert_allclose(m, t.numpy(), rtol=1e-5)


@requires_torch
def test_weight_gradient_alone_when_input_needs_none():
    x, weight = randn(4, 3, seed=1), randn(3, seed=2)
    mine, theirs = mg.tensor(weight, requires_grad=True), torch.tensor(weight, requires_grad=True)
    BatchNorm.apply(mg.tensor(x), mine, training=True).backward(mg.tensor(randn(4, 3, seed=4)))
    torch.nn.functional.batch_norm(torch.tensor(x), None, None, theirs, training=True).backward(
        torch.tensor(randn(4, 3, seed=4)))
    np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10)


def apply_batch_norm(x_shape=(4, 3), weight_shape=None, bias_shape=None, buffer_shape=(3,), dtype=np.float64,
                     **options):
    """BatchNorm on ones of x_shape with float64 weight, bias and buffers of the shapes given (None: left out)."""
    x = mg.tensor(np.ones(x_shape, dtype=dtype))
    weight = None if weight_shape is None else mg.ones(*weight_shape, dtype=mg.float64)
    bias = None if bias_shape is None else mg.zeros(*bias_shape, dtype=mg.float64)
    options.setdefault("training", True)
    if buffer_shape is not None:
        options.setdefault("running_mean", np.zeros(buffer_shape))
        options.setdefault("running_var", np.ones(buffer_shape))
    return BatchNorm.apply(x, weight, bias, **options)


@pytest.mark.parametrize("arguments, error, message", [
    ({"x_shape": (4, 3, 5)}, ValueError,
     r"batch_norm: expected input of shape \(N, C\) or \(N, C, H, W\), got \(4, 3, 5\)"),
    ({"x_shape": (4,)}, ValueError, r"batch_norm: expected input of shape .*got \(4,\)"),
    ({"weight_shape": (4,)}, ValueError, r"batch_norm: weight must have shape \(3,\).*input \(4, 3\), got \(4,\)"),
    ({"bias_shape": (3, 1)}, ValueError, r"batch_norm: bias must have shape \(3,\).*got \(3, 1\)"),
    ({"x_shape": (2, 5, 3, 3)}, ValueError, r"batch_norm: running_mean must have shape \(5,\).*got \(3,\)"),
    ({"running_var": np.ones(4)}, ValueError, r"batch_norm: running_var must have shape \(3,\).*got \(4,\)"),
    ({"x_shape": (1, 3)}, ValueError,
     r"batch_norm: expected more than 1 value per channel when training, got input of shape \(1, 3\)"),
    ({"x_shape": (1, 3, 1, 1)}, ValueError, r"more than 1 value per channel.*\(1, 3, 1, 1\)"),
    ({"momentum": 1.5}, ValueError, r"batch_norm: momentum must be in \[0, 1\], got 1.5"),
    ({"momentum": -0.1}, ValueError, r"batch_norm: momentum must be in \[0, 1\], got -0.1"),
    ({"eps": -1e-5}, ValueError, r"batch_norm: eps must not be negative"),
    ({"buffer_shape": None, "training": False}, ValueError,
     r"batch_norm: training=False .* running_mean and running_var are required"),
    ({"running_var": None}, ValueError, r"batch_norm: give both running_mean and running_var, or neither"),
    ({"dtype": np.int64}, TypeError, r"batch_norm: expected floating-point inputs, input is int64"),
    ({"dtype": np.float32, "weight_shape": (3,)}, TypeError,
     r"batch_norm: inputs must have one dtype, got input float32, weight float64"),
    ({"running_mean": np.zeros(3, dtype=np.int64)}, TypeError,
     r"batch_norm: running_mean must be floating-point, got int64"),
])
def test_batch_norm_errors(arguments, error, message):
    with pytest.raises(error, match=message):
        apply_batch_norm(**arguments)
