"""Elementwise nodes: arithmetic with broadcasting, and the pointwise functions.

For y = f(x) applied element by element, dL/dx = dL/dy * f'(x): each backward
below is that product with its own f'. Binary ops broadcast their inputs, so
a gradient may come back larger than an input; ``unbroadcast`` sums it down.
The operands of a binary node arrive in one dtype: ``Tensor`` promotes them
first, as PyTorch does.
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import PARALLEL_SIZE, default_float_dtype, get_array_module, is_cupy_array, run_on_slices
from . import kernels_cuda
from .common import constant, keep, sum_to


def floating(x):
    """x if it is floating point, else x in the default float dtype: exp of an int64 tensor is float32, as in PyTorch."""
    return x if x.dtype.kind == "f" else x.astype(default_float_dtype)


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``.

    If x of shape (3, 1) was broadcast to (2, 3, 4), each x[i, 0] fed 2 * 4
    outputs, so its gradient is the sum of those outputs' gradients.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] != 1)
    grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


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

    def backward_arrays(self, grad):
        return unbroadcast(grad, self.a_shape), unbroadcast(grad, self.b_shape)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def backward(self, grad):
        """d(a-b)/da = 1, d(a-b)/db = -1."""
        return sum_to(grad, self.a_shape), sum_to(-grad, self.b_shape)

    def backward_arrays(self, grad):
        return unbroadcast(grad, self.a_shape), unbroadcast(-grad, self.b_shape)


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

    def backward_arrays(self, grad):
        a, b = self.saved
        grad_a = unbroadcast(grad * b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * a, self.b_shape) if self.needs_input_grad[1] else None
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

    def backward_arrays(self, grad):
        a, b = self.saved
        grad_a = unbroadcast(grad / b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad * a / (b * b), self.b_shape) if self.needs_input_grad[1] else None
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

    def backward_arrays(self, grad):
        # d(a^b)/da = b a^(b-1), taken as 0 where b = 0 (a^0 = 1 for every a, even a = 0);
        # d(a^b)/db = a^b ln(a), taken as 0 where a = 0 and b >= 0 (0^b is 0 or 1 there).
        # Both as PyTorch; the masks are applied before the arithmetic, so no 0 * inf appears.
        a, b, out = self.saved
        xp = get_array_module(a)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            zero_power = b == 0
            slope = xp.where(zero_power, 0, b * a ** xp.where(zero_power, 1, b - 1))
            grad_a = unbroadcast(grad * slope.astype(grad.dtype, copy=False), self.a_shape)
        if self.needs_input_grad[1]:
            positive = a > 0
            log_a = xp.log(xp.where(positive, a, 1))  # ln a where a > 0; the rest is set below
            # a = 0: a^b ln a is 0 for b >= 0, -inf for b < 0 (inf times -inf); a < 0: NaN, as ln a
            rest = xp.where(a == 0, xp.where(b >= 0, 0.0, -xp.inf), xp.nan)
            slope = xp.where(positive, xp.where(positive, out, 0) * log_a, rest)
            grad_b = unbroadcast(grad * slope.astype(grad.dtype, copy=False), self.b_shape)
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

    def backward_arrays(self, grad):
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

    def backward_arrays(self, grad):
        # d(e^x)/dx = e^x, which forward already computed
        y, = self.saved
        return grad * y


class Log(Function):
    def forward(self, x):
        x = floating(x)
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, grad):
        """d(ln x)/dx = 1/x."""
        x, = self.inputs
        return grad / x

    def backward_arrays(self, grad):
        # d(ln x)/dx = 1/x
        x, = self.saved
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

    def backward_arrays(self, grad):
        # d(sqrt x)/dx = 1 / (2 sqrt x)
        y, = self.saved
        return grad / (2 * y)


class Abs(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return abs(x)

    def backward(self, grad):
        """d|x|/dx = sign(x), 0 at x = 0 (as PyTorch); sign is constant where it has a derivative."""
        x, = self.inputs
        return grad * constant(get_array_module(x.data).sign(x.data))

    def backward_arrays(self, grad):
        # d|x|/dx = sign(x), taken as 0 at x = 0 (as PyTorch does)
        x, = self.saved
        return grad * get_array_module(x).sign(x)


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

    def backward_arrays(self, grad):
        # slope 1 where lo <= x <= hi (bounds included, as torch.clamp), 0 where clamped;
        # with lo > hi no x is inside, so the gradient is 0 everywhere, as in PyTorch
        x, = self.saved
        inside = True
        if self.lo is not None:
            inside = x >= self.lo
        if self.hi is not None:
            inside = inside & (x <= self.hi)
        return grad * inside


class ReLU(Function):
    """max(x, 0). A big batch is shared among threads, each image on its own (NumPy uses one core per line)."""

    def forward(self, x):
        xp = get_array_module(x)
        # y starts as zeros and becomes max(x, y): NumPy's maximum of two arrays runs
        # about twice as fast as max(x, 0) against the scalar, even with the zeroing
        # (0.28 against 0.60 ms for mnist_bn's first activation on one core)
        y = xp.zeros(x.shape, x.dtype)

        def relu(part):
            xp.maximum(x[part], y[part], out=y[part])
        on_row_slices(relu, x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        """d max(x, 0)/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch); selected, not multiplied,
        so a NaN or inf upstream stays out where y <= 0, as PyTorch's threshold_backward."""
        return keep(grad, self.output().data > 0)

    def backward_arrays(self, grad):
        # d max(x, 0)/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch). Where y <= 0 the
        # gradient is 0 even when the upstream one is NaN or inf, as PyTorch's threshold_backward:
        # it is selected, not multiplied by 0.
        y, = self.saved
        if is_cupy_array(y):
            return kernels_cuda.relu_backward(grad, y)  # one launch instead of three
        xp = get_array_module(grad)
        grad_x = xp.zeros(grad.shape, grad.dtype)

        def select(part):
            xp.copyto(grad_x[part], grad[part], where=y[part] > 0)
        on_row_slices(select, grad)
        return grad_x


def on_row_slices(work, x):
    """Call ``work(part)`` on slices of x's first axis, shared among threads when x is big (a 0-d x: one call)."""
    if x.ndim == 0:
        work(...)
    else:
        run_on_slices(work, x.shape[0], x, min_size=PARALLEL_SIZE)


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

    def backward_arrays(self, grad):
        # d sigma/dx = sigma (1 - sigma)
        y, = self.saved
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

    def backward_arrays(self, grad):
        # d tanh/dx = 1 - tanh^2
        y, = self.saved
        return grad * (1 - y * y)
