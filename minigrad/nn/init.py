"""Weight initialisation: fill a tensor in place with numbers of a chosen spread.

A layer's outputs keep a steady scale through a deep network only if each
weight's variance is about 1 / fan, where fan is the number of inputs
(``fan_in``) or outputs (``fan_out``) a weight connects. Each function below
picks its spread from that rule, overwrites ``t.data`` in place (so a
Parameter stays the same object) and returns ``t``, as ``torch.nn.init`` does.

Random numbers come from minigrad's seeded generator (``mg.manual_seed``),
drawn in float64 and then stored in the tensor's dtype, on its device.
"""
import math

from ..backend import generator, get_array_module


def calculate_gain(nonlinearity, param=None):
    """The factor by which a nonlinearity shrinks the standard deviation, to be undone by the init.

    relu: sqrt(2); leaky_relu with slope s (``param``, default 0.01):
    sqrt(2 / (1 + s^2)); tanh: 5/3; selu: 3/4; linear, conv and sigmoid: 1.
    """
    linear_like = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                   "conv_transpose2d", "conv_transpose3d", "sigmoid"]
    if nonlinearity in linear_like:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t):
    """(fan_in, fan_out) of a weight: (out, in) for Linear, (out, in, kH, kW) for Conv2d.

    A convolution weight connects each output to in * kH * kW inputs, so the
    kernel's area (the receptive field) multiplies both fans.
    """
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than "
                         f"2 dimensions (shape {t.shape})")
    receptive_field = math.prod(t.shape[2:])
    return t.shape[1] * receptive_field, t.shape[0] * receptive_field


def _calculate_correct_fan(t, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} is not supported, use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


def _fill(t, values):
    """Write ``values`` (an array of t's shape, any float dtype) into t's own array."""
    t.data[...] = values
    t._bump_version()  # an in-place change: a graph that saved t would now be wrong
    return t


def _random(t):
    """The seeded generator of the array library that holds t (NumPy's or CuPy's)."""
    return generator(get_array_module(t.data))


def constant_(t, val):
    """Fill with ``val``. Keras: ``initializers.Constant(val)``."""
    t.data[...] = val
    t._bump_version()
    return t


def zeros_(t):
    """Fill with 0. Keras: ``zeros`` (its default for biases)."""
    return constant_(t, 0)


def ones_(t):
    """Fill with 1. Keras: ``ones`` (BatchNorm's gamma)."""
    return constant_(t, 1)


def uniform_(t, a=0.0, b=1.0):
    """Fill from U(a, b). Keras: ``RandomUniform(minval=a, maxval=b)``."""
    return _fill(t, a + (b - a) * _random(t).random(t.shape))


def normal_(t, mean=0.0, std=1.0):
    """Fill from N(mean, std^2). Keras: ``RandomNormal(mean, stddev=std)``."""
    return _fill(t, mean + std * _random(t).standard_normal(t.shape))


def _normal_cdf(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill from N(mean, std^2) restricted to [a, b]; a and b are absolute bounds, as in PyTorch.

    By rejection: draw normals and keep those inside [a, b] until every entry
    has one, so the result follows the truncated normal exactly. Each round
    draws enough candidates for the entries still empty, given the share of
    the normal's mass that lies in [a, b]. TF's ``truncated_normal(stddev=s)``
    and Keras' ``TruncatedNormal`` cut at two standard deviations: that is
    ``trunc_normal_(t, mean, s, a=mean - 2 * s, b=mean + 2 * s)``.
    """
    if not std > 0 or not a < b:
        raise ValueError(f"trunc_normal_: need std > 0 and a < b, got std={std}, a={a}, b={b}")
    mass = _normal_cdf((b - mean) / std) - _normal_cdf((a - mean) / std)
    if mass < 1e-4:
        raise ValueError(f"trunc_normal_: [a, b] = [{a}, {b}] holds only {mass:.2g} of the mass of "
                         f"N({mean}, {std}^2); move the bounds nearer the mean")
    xp, rng = get_array_module(t.data), _random(t)
    values = xp.empty(t.data.size)
    filled = 0
    while filled < values.size:
        wanted = values.size - filled
        draws = mean + std * rng.standard_normal(int(wanted / mass) + 16)
        kept = draws[(draws >= a) & (draws <= b)][:wanted]
        values[filled:filled + kept.size] = kept
        filled += kept.size
    return _fill(t, values.reshape(t.shape))


def kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).

    Keeps the variance of activations (``fan_in``) or of gradients
    (``fan_out``) steady through ReLU layers. Keras ``he_uniform`` is
    ``kaiming_uniform_(t, nonlinearity="relu")`` on a kernel stored as
    (out, in). PyTorch's default for Linear and Conv2d uses a = sqrt(5),
    which gives bound = 1 / sqrt(fan_in).
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(t, mode))
    bound = math.sqrt(3.0) * std  # U(-c, c) has std c / sqrt(3)
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """He normal: N(0, std^2) with std = gain / sqrt(fan).

    Keras ``he_normal`` (std sqrt(2 / fan_in), as ``nonlinearity="relu"``)
    draws from a normal truncated at two std and rescaled instead.
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(t, mode))
    return normal_(t, 0.0, std)


def xavier_uniform_(t, gain=1.0):
    """Glorot uniform: U(-bound, bound) with bound = gain * sqrt(6 / (fan_in + fan_out)).

    Balances the variance of activations and of gradients. Keras:
    ``glorot_uniform``, the default kernel initializer of Dense and Conv2D.
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound)


def xavier_normal_(t, gain=1.0):
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).

    Keras ``glorot_normal`` has the same std but draws from a normal
    truncated at two std and rescaled.
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
