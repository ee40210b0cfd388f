"""Fast elementwise rules: each node's first-order gradient on raw arrays, and a threaded ReLU.

The textbook rules (``ops/elementwise.py``) build their gradients from Tensor
ops, recording a graph node per step. The drop-ins here compute the same
derivative directly on the arrays. ReLU also splits its forward and backward
passes among threads on the CPU (NumPy runs one elementwise pass on one core)
and takes one fused kernel for its gradient on a GPU.
"""
from ..backend import get_array_module, is_cupy_array
from ..ops import elementwise as textbook
from . import cuda_kernels
from .cpu import PARALLEL_SIZE, run_on_slices


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape`` (one pass).

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


class Add(textbook.Add):
    def backward_arrays(self, grad):
        # d(a+b)/da = d(a+b)/db = 1
        return unbroadcast(grad, self.a_shape), unbroadcast(grad, self.b_shape)


class Sub(textbook.Sub):
    def backward_arrays(self, grad):
        # d(a-b)/da = 1, d(a-b)/db = -1
        return unbroadcast(grad, self.a_shape), unbroadcast(-grad, self.b_shape)


class Mul(textbook.Mul):
    def backward_arrays(self, grad):
        # d(ab)/da = b, d(ab)/db = a (forward saved only the factor each gradient needs)
        a, b = self.saved
        grad_a = unbroadcast(grad * b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * a, self.b_shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(textbook.Div):
    def backward_arrays(self, grad):
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        a, b = self.saved
        grad_a = unbroadcast(grad / b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad * a / (b * b), self.b_shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Pow(textbook.Pow):
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


class Neg(textbook.Neg):
    def backward_arrays(self, grad):
        # d(-x)/dx = -1
        return -grad


class Exp(textbook.Exp):
    def backward_arrays(self, grad):
        # d(e^x)/dx = e^x, which forward already computed
        y, = self.saved
        return grad * y


class Log(textbook.Log):
    def backward_arrays(self, grad):
        # d(ln x)/dx = 1/x
        x, = self.saved
        return grad / x


class Sqrt(textbook.Sqrt):
    def backward_arrays(self, grad):
        # d(sqrt x)/dx = 1 / (2 sqrt x)
        y, = self.saved
        return grad / (2 * y)


class Abs(textbook.Abs):
    def backward_arrays(self, grad):
        # d|x|/dx = sign(x), taken as 0 at x = 0 (as PyTorch does)
        x, = self.saved
        return grad * get_array_module(x).sign(x)


class Clip(textbook.Clip):
    def backward_arrays(self, grad):
        # slope 1 where lo <= x <= hi (bounds included, as torch.clamp), 0 where clamped, selected
        # rather than multiplied so that a NaN or inf upstream stays out; with lo > hi no x is inside
        x, = self.saved
        xp = get_array_module(x)
        return xp.where(self.inside(x), grad, xp.zeros((), grad.dtype))


class ReLU(textbook.ReLU):
    """Fast ReLU: a big batch shared among threads on the CPU, the gradient in one fused kernel on a GPU."""

    def forward(self, x):
        self.check_input(x)
        xp = get_array_module(x)
        # y starts as zeros and becomes max(x, y): NumPy's maximum of two arrays runs
        # faster than max(x, 0) against the scalar, even counting the zeroing
        y = xp.zeros(x.shape, x.dtype)

        def relu(part):
            xp.maximum(x[part], y[part], out=y[part])
        on_row_slices(relu, x)
        self.save_for_backward(y)
        return y

    def backward_arrays(self, grad):
        # d max(x, 0)/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch). Where y <= 0 the
        # gradient is 0 even when the upstream one is NaN or inf, as PyTorch's threshold_backward:
        # it is selected, not multiplied by 0.
        y, = self.saved
        if is_cupy_array(y):
            return cuda_kernels.relu_backward(grad, y)  # one launch instead of three
        grad_x = get_array_module(grad).empty(grad.shape, grad.dtype)

        def select(part):
            zero_where(y[part] <= 0, grad[part], out=grad_x[part])  # a NaN y passes, as in the textbook rule
        on_row_slices(select, grad)
        return grad_x


def zero_where(drop, values, out):
    """``out`` = ``values`` with +0 where ``drop`` is True, chosen bit by bit, without a branch per element.

    The selection of the textbook rule, which a NaN or inf in ``values`` does
    not leak through (multiplying by 0 would give NaN). A masked copy
    (``copyto(..., where=)``) branches on every element and runs several
    times slower on a random mask; here the mask becomes an integer of the
    values' width, 0 (drop) or all ones (keep), and an AND of the bits keeps
    or clears each value: bit for bit what the masked copy gives.
    """
    xp = get_array_module(values)
    bits = xp.dtype(f"i{values.dtype.itemsize}")
    keep = out.view(bits)
    xp.subtract(drop, 1, out=keep, casting="unsafe")  # True -> 0, False -> -1 (all bits set)
    xp.bitwise_and(values.view(bits), keep, out=keep)


def on_row_slices(work, x):
    """Call ``work(part)`` on slices of x's first axis, shared among threads when x is big (a 0-d x: one call)."""
    if x.ndim == 0:
        work(...)
    else:
        run_on_slices(work, x.shape[0], x, min_size=PARALLEL_SIZE)


class Sigmoid(textbook.Sigmoid):
    def backward_arrays(self, grad):
        # d sigma/dx = sigma (1 - sigma)
        y, = self.saved
        return grad * y * (1 - y)


class Tanh(textbook.Tanh):
    def backward_arrays(self, grad):
        # d tanh/dx = 1 - tanh^2
        y, = self.saved
        return grad * (1 - y * y)


DROP_INS = {
    textbook.Add: Add, textbook.Sub: Sub, textbook.Mul: Mul, textbook.Div: Div, textbook.Pow: Pow,
    textbook.Neg: Neg, textbook.Exp: Exp, textbook.Log: Log, textbook.Sqrt: Sqrt, textbook.Abs: Abs,
    textbook.Clip: Clip, textbook.ReLU: ReLU, textbook.Sigmoid: Sigmoid, textbook.Tanh: Tanh,
}
