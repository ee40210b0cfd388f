"""minigrad.nn.init and the layers' default initialisation.

Random fills are checked by their statistics on large tensors: the mean and
standard deviation within a few percent of the formula's (a wrong gain or
fan is off by 20% or more), and the bounds of bounded distributions. Every
test seeds minigrad first, so the draws, and the results, are the same each run.
"""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import init


@pytest.fixture(autouse=True)
def seeded():
    mg.manual_seed(0)


def _pdf(z):
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _cdf(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def truncated_normal_moments(mean, std, a, b):
    """Mean and std of N(mean, std^2) restricted to [a, b] (the textbook formulas)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    mass = _cdf(beta) - _cdf(alpha)
    shift = (_pdf(alpha) - _pdf(beta)) / mass
    variance = 1 + (alpha * _pdf(alpha) - beta * _pdf(beta)) / mass - shift ** 2
    return mean + std * shift, std * math.sqrt(variance)


def uniform_moments(low, high):
    return (low + high) / 2, (high - low) / math.sqrt(12)


def kaiming_bound(gain, fan):
    return gain * math.sqrt(3 / fan)


# (name, fill, shape, expected mean, expected std, bounds or None)
CASES = [
    ("uniform_", lambda t: init.uniform_(t, -1.0, 3.0), (256, 256), *uniform_moments(-1, 3), (-1, 3)),
    ("normal_", lambda t: init.normal_(t, mean=2.0, std=0.5), (256, 256), 2.0, 0.5, None),
    ("kaiming_uniform_ leaky_relu a=0 fan_in", init.kaiming_uniform_, (512, 128),
     0, kaiming_bound(math.sqrt(2), 128) / math.sqrt(3), (-kaiming_bound(math.sqrt(2), 128),
                                                         kaiming_bound(math.sqrt(2), 128))),
    ("kaiming_uniform_ a=sqrt(5) (PyTorch's default)", lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)),
     (64, 32, 3, 3), 0, 1 / math.sqrt(288 * 3), (-1 / math.sqrt(288), 1 / math.sqrt(288))),
    ("kaiming_uniform_ relu fan_out", lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
     (64, 32, 3, 3), 0, math.sqrt(2 / 576), (-math.sqrt(6 / 576), math.sqrt(6 / 576))),
    ("kaiming_normal_ tanh", lambda t: init.kaiming_normal_(t, nonlinearity="tanh"), (128, 64, 2, 2),
     0, 5 / 3 / math.sqrt(256), None),
    ("kaiming_normal_ relu fan_out", lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
     (512, 128), 0, math.sqrt(2 / 512), None),
    ("xavier_uniform_ gain 2", lambda t: init.xavier_uniform_(t, gain=2.0), (300, 200),
     0, 2 * math.sqrt(2 / 500), (-2 * math.sqrt(6 / 500), 2 * math.sqrt(6 / 500))),
    ("xavier_normal_", init.xavier_normal_, (64, 32, 3, 3), 0, math.sqrt(2 / (288 + 576)), None),
    ("trunc_normal_ standard", init.trunc_normal_, (256, 256), *truncated_normal_moments(0, 1, -2, 2), (-2, 2)),
    ("trunc_normal_ TF style std 0.01", lambda t: init.trunc_normal_(t, std=0.01, a=-0.02, b=0.02), (256, 256),
     *truncated_normal_moments(0, 0.01, -0.02, 0.02), (-0.02, 0.02)),
    ("trunc_normal_ one-sided window", lambda t: init.trunc_normal_(t, mean=1.0, std=2.0, a=0.0, b=5.0),
     (256, 256), *truncated_normal_moments(1, 2, 0, 5), (0, 5)),
    ("trunc_normal_ in the tail", lambda t: init.trunc_normal_(t, a=2.0, b=3.0), (256, 256),
     *truncated_normal_moments(0, 1, 2, 3), (2, 3)),
]


@pytest.mark.parametrize("name, fill, shape, mean, std, bounds", CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("dtype", [mg.float32, mg.float64])
def test_random_fills_have_the_formulas_statistics(name, fill, shape, mean, std, bounds, dtype):
    t = mg.zeros(*shape, dtype=dtype)
    array = t.data
    assert fill(t) is t and t.data is array and t.dtype == dtype  # in place
    values = t.numpy().astype(np.float64)
    assert abs(values.mean() - mean) < 0.03 * std, "mean"
    assert abs(values.std() / std - 1) < 0.02, "standard deviation"
    if bounds is not None:
        low, high = bounds
        assert low <= values.min() and values.max() <= high, "outside the bounds"
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low), \
            "the bounds are not reached: too narrow a distribution"


def test_constant_fills():
    t = mg.zeros(3, 4)
    assert init.constant_(t, 0.25) is t and (t.numpy() == 0.25).all()
    assert (init.ones_(t).numpy() == 1).all()
    assert (init.zeros_(t).numpy() == 0).all()


def test_fills_are_reproducible_under_manual_seed():
    draws = []
    for seed in (5, 5, 6):
        mg.manual_seed(seed)
        t = mg.zeros(10, 10)
        init.kaiming_uniform_(t)
        init.trunc_normal_(t)
        draws.append(t.numpy().copy())
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def test_trunc_normal_refuses_a_window_with_almost_no_mass():
    with pytest.raises(ValueError, match="holds only"):
        init.trunc_normal_(mg.zeros(3), a=10.0, b=11.0)
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(mg.zeros(3), a=1.0, b=-1.0)


def test_calculate_gain_and_fans_are_pytorchs():
    torch = pytest.importorskip("torch")
    for nonlinearity, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                ("leaky_relu", math.sqrt(5)), ("selu", None)]:
        assert init.calculate_gain(nonlinearity, param) == pytest.approx(
            torch.nn.init.calculate_gain(nonlinearity, param)), nonlinearity
    for shape in [(3, 4), (5, 3, 2, 2), (2, 3, 4), (7, 1, 5)]:
        expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
        assert init._calculate_fan_in_and_fan_out(mg.zeros(*shape)) == expected, shape
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(mg.zeros(5))
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="fan_in"):
        init.kaiming_uniform_(mg.zeros(3, 3), mode="fan_avg")


# ----- the layers' defaults: PyTorch's -----------------------------------------------------------
@pytest.mark.parametrize("layer, fan_in", [(lambda: nn.Linear(400, 250), 400),
                                           (lambda: nn.Conv2d(32, 64, 3), 32 * 9),
                                           (lambda: nn.Conv2d(3, 300, (5, 2)), 3 * 10)],
                         ids=["Linear(400, 250)", "Conv2d(32, 64, 3)", "Conv2d(3, 300, (5, 2))"])
def test_linear_and_conv_start_uniform_within_one_over_sqrt_fan_in(layer, fan_in):
    layer = layer()
    bound = 1 / math.sqrt(fan_in)
    for name, param in layer.named_parameters():
        values = param.numpy()
        assert param.dtype == mg.float32 and param.requires_grad
        assert np.abs(values).max() <= bound, name
        assert np.abs(values).max() > 0.9 * bound, f"{name} spans too little of +-1/sqrt(fan_in)"
    weight = layer.weight.numpy()
    assert abs(weight.std() / (bound / math.sqrt(3)) - 1) < 0.03  # U(-b, b) has std b / sqrt(3)


def test_batch_norm_starts_as_the_identity():
    layer = nn.BatchNorm2d(5)
    assert (layer.weight.numpy() == 1).all() and (layer.bias.numpy() == 0).all()
    assert (layer.running_mean.numpy() == 0).all() and (layer.running_var.numpy() == 1).all()
    assert layer.num_batches_tracked.item() == 0 and layer.num_batches_tracked.dtype == mg.int64
    layer(mg.randn(4, 5, 3, 3))
    layer.reset_parameters()
    assert layer.num_batches_tracked.item() == 0 and (layer.running_mean.numpy() == 0).all()


def test_default_init_is_reproducible_under_manual_seed():
    def weights(seed):
        mg.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(8, 3))
        return [p.numpy() for p in model.parameters()]

    first, again, other = weights(7), weights(7), weights(8)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
