"""Elementwise nodes: arithmetic with broadcasting, and the pointwise functions.

For y = f(x) applied element by element, dL/dx = dL/dy * f'(x): each backward
below is that product with its own f'. Binary ops broadcast their inputs, so
a gradient may come back larger than an input; ``sum_to`` sums it down.
The operands of a binary node arrive in one dtype: ``Tensor`` promotes them
first, as PyTorch does.
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import default_float_dtype, get_array_module
from .common import constant, keep, sum_to


def floating(x):
    """x if it is floating point, else x in the default float dtype: exp of an int64 tensor is float32, as in PyTorch."""
    return x if x.dtype.kind == "f" else x.astype(default_float_dtype)


class _Binary(Function):
    """Broadcasting binary op: checks shapes once, with the op's own name in the message."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        try:
            return self.compute(a, b)
        except ValueError as error:
            if "broadcast" not in str(error):
                raise
            raise ShapeError(
                f"{self.name.lower()}: shapes {a.shape} and {b.shape} cannot be broadcast together "
                "(each axis, aligned from the right, must match or be 1)") from None


class Add(_Binary):
    def compute(self, a, b):
        return a + b

    def backward(self, grad):
        """d(a+b)/da = d(a+b)/db = 1."""
        return sum_to(grad, self.a_shape), sum_to(grad, self.b_shape)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def backward(self, grad):
        """d(a-b)/da = 1, d(a-b)/db = -1."""
        return sum_to(grad, self.a_shape), sum_to(-grad, self.b_shape)


class Mul(_Binary):
    def compute(self, a, b):
        # each factor is needed only for the other's gradient
        self.save_for_backward(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[0] else None)
        return a * b

    def backward(self, grad):
        """d(ab)/da = b, d(ab)/db = a."""
        a, b = self.inputs
        grad_a = sum_to(grad * b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(grad * a, self.b_shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(_Binary):
    def compute(self, a, b):
        self.save_for_backward(a if self.needs_input_grad[1] else None, b)
        return a / b

    def backward(self, grad):
        """d(a/b)/da = 1/b, d(a/b)/db = -a/b^2."""
        a, b = self.inputs
        grad_a = sum_to(grad / b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(-grad * a / (b * b), self.b_shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Pow(_Binary):
    def compute(self, a, b):
        out = integer_power(a, b) if a.dtype.kind in "biu" and b.dtype.kind in "biu" else a ** b
        self.save_for_backward(a, b, out if self.needs_input_grad[1] else None)
        return out

    def backward(self, grad):
        """d(a^b)/da = b a^(b-1), 0 where b = 0; d(a^b)/db = a^b ln a, 0 where a = 0 <= b (as PyTorch).

        The masks select before the arithmetic (``keep``, and an exponent of 1
        where b = 0), so no 0 * inf appears here or in the rules' own gradients.
        """
        a, b = self.inputs
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            zero_power = b.data == 0
            exponent = keep(b - 1, ~zero_power) + constant(zero_power.astype(b.dtype))  # 1 where b = 0
            grad_a = sum_to(grad * keep(b * a ** exponent, ~zero_power), self.a_shape)
        if self.needs_input_grad[1]:
            xp = get_array_module(a.data)
            positive = a.data > 0
            log_a = (keep(a, positive) + constant((~positive).astype(a.dtype))).log()  # ln a where a > 0
            rest = xp.where(positive, 0.0, xp.where(a.data == 0, xp.where(b.data >= 0, 0.0, -xp.inf), xp.nan))
            slope = keep(self.output() * log_a, positive) + constant(rest.astype(a.dtype, copy=False))
            grad_b = sum_to(grad * slope, self.b_shape)
        return grad_a, grad_b


def integer_power(a, b):
    """a ** b for integer (or bool) arrays, as PyTorch computes it: a negative power is 1 for a = 1, +-1 for
    a = -1, else 0 (1/a^k rounded towards zero; NumPy refuses negative integer powers outright); bools stay bool.
    """
    xp = get_array_module(a)
    negative = b < 0
    out = a ** xp.where(negative, 0, b)
    odd = (b & 1) == 1
    reciprocal = xp.where(a == 1, 1, xp.where(a == -1, xp.where(odd, -1, 1), 0))
    return xp.where(negative, reciprocal, out).astype(xp.result_type(a.dtype, b.dtype), copy=False)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        """d(-x)/dx = -1."""
        return -grad


class Exp(Function):
    def forward(self, x):
        x = floating(x)
        y = get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        """d(e^x)/dx = e^x: the output itself."""
        return grad * self.output()


class Log(Function):
    def forward(self, x):
        x = floating(x)
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, grad):
        """d(ln x)/dx = 1/x."""
        x, = self.inputs
        return grad / x


class Sqrt(Function):
    def forward(self, x):
        x = floating(x)
        y = get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        """d(sqrt x)/dx = 1 / (2 sqrt x), with sqrt x the output."""
        return grad / (2 * self.output())


class Abs(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return abs(x)

    def backward(self, grad):
        """d|x|/dx = sign(x), 0 at x = 0 (as PyTorch); sign is constant where it has a derivative."""
        x, = self.inputs
        return grad * constant(get_array_module(x.data).sign(x.data))


class Clip(Function):
    """Clamp into [lo, hi]: min(max(x, lo), hi), so lo > hi gives hi everywhere, as torch.clamp.

    Either bound may be None (no bound on that side). NaN stays NaN.
    """

    def __init__(self, lo=None, hi=None):
        if lo is None and hi is None:
            raise ValueError("clip: give at least one of lo and hi")
        self.lo, self.hi = lo, hi

    def forward(self, x):
        self.save_for_backward(x)
        xp = get_array_module(x)
        y = x if self.lo is None else xp.maximum(x, self.lo)
        return y if self.hi is None else xp.minimum(y, self.hi)

    def backward(self, grad):
        """Slope 1 where lo <= x <= hi (bounds included, as torch.clamp), 0 where clamped."""
        return keep(grad, self.inside(self.inputs[0].data))

    def inside(self, x):
        """Where lo <= x <= hi (False where x is NaN)."""
        inside = get_array_module(x).ones(x.shape, dtype=bool)
        if self.lo is not None:
            inside &= x >= self.lo
        if self.hi is not None:
            inside &= x <= self.hi
        return inside


class ReLU(Function):
    """max(x, 0), elementwise, in x's dtype; NaN stays NaN. Booleans are refused, as PyTorch refuses them."""

    def forward(self, x):
        self.check_input(x)
        y = get_array_module(x).maximum(x, 0)  # against a Python 0: x's dtype is kept
        self.save_for_backward(y)
        return y

    def check_input(self, x):
        """Refuse booleans: max(x, 0) of a bool would silently become an integer."""
        if x.dtype == bool:
            raise TypeError("relu: boolean inputs are not supported (as in PyTorch); "
                            "convert with .to(dtype) first, e.g. .to(mg.float32)")

    def backward(self, grad):
        """d max(x, 0)/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch); selected, not multiplied,
        so a NaN or inf upstream stays out where y <= 0, as PyTorch's threshold_backward. A NaN input
        passes its gradient on, as there: the test is "not y <= 0", which NaN passes."""
        return keep(grad, ~(self.output().data <= 0))


class Sigmoid(Function):
    def forward(self, x):
        x, xp = floating(x), get_array_module(x)
        # 1 / (1 + e^-x) overflows e^-x for x << 0; tanh form is stable everywhere.
        y = 0.5 * (xp.tanh(0.5 * x) + 1)
        self.save_for_backward(y)
        return y.astype(x.dtype, copy=False)

    def backward(self, grad):
        """d sigma/dx = sigma (1 - sigma), with sigma the output."""
        y = self.output()
        return grad * y * (1 - y)


class Tanh(Function):
    def forward(self, x):
        x = floating(x)
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        """d tanh/dx = 1 - tanh^2, with tanh x the output."""
        y = self.output()
        return grad * (1 - y * y)
