"""What the textbook backward rules share: constants, broadcasting and its undoing, masks, scatters.

Each helper here is itself a graph node whose own textbook rule is the
adjoint of its forward (broadcasting and summing back, gathering and
scattering, keeping under a mask), so any rule built from them can be
differentiated again, as often as asked.
"""
import numbers

from ..errors import ShapeError
from ..autograd import Function
from ..backend import add_at, get_array_module, is_floating


def constant(array):
    """An array as a Tensor that needs no gradient (a mask, an index): a rule's fixed ingredient."""
    from ..tensor import Tensor
    return Tensor._from_array(array)


class BroadcastTo(Function):
    """x repeated to ``shape`` by NumPy's broadcasting; its gradient sums the copies back (``sum_to``)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, grad):
        return sum_to(grad, self.in_shape)


def broadcast_to(x, shape):
    return x if x.shape == tuple(shape) else BroadcastTo.apply(x, shape=shape)


def sum_to(grad, shape):
    """``grad`` summed down to ``shape``: the gradient of broadcasting an input of that shape up.

    A broadcast copies an input along new leading axes and along axes of
    size 1, so each input element feeds several outputs and its gradient is
    the sum of theirs (the sum rule): sum the extra leading axes away, then
    sum, keeping them, the axes that were 1.
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class Keep(Function):
    """x where ``mask`` holds, 0 elsewhere: selected, not multiplied, so an inf or NaN outside stays out."""

    def __init__(self, mask):
        self.mask = mask

    def forward(self, x):
        xp = get_array_module(x)
        return xp.where(self.mask, x, xp.zeros((), x.dtype))

    def backward(self, grad):
        # linear in x with slope 1 inside the mask and 0 outside: the same selection
        return keep(grad, self.mask)


def keep(x, mask):
    """``x`` where the boolean array ``mask`` is true, exactly 0 elsewhere (a graph node)."""
    return Keep.apply(x, mask=mask)


class ScatterAdd(Function):
    """Zeros of ``shape`` with ``x`` added at ``x_full[basic][advanced]``: the adjoint of indexing.

    An element named twice by the index receives both additions. Its
    gradient reads the gradient back at the same places: indexing again.
    """

    def __init__(self, shape, basic, advanced, index):
        self.shape, self.basic, self.advanced, self.index = shape, basic, advanced, index

    def forward(self, x):
        return scatter_add(x, self.shape, self.basic, self.advanced)

    def backward(self, grad):
        return grad[self.index]


def scatter_add(grad, shape, basic, advanced):
    """Zeros of ``shape`` with ``grad`` added at ``[basic][advanced]`` (repeated places summed, in index order)."""
    xp = get_array_module(grad)
    full = xp.zeros(shape, dtype=grad.dtype)
    if advanced is None:
        full[basic] = grad
    else:
        add_at(full[basic], advanced, grad)  # full[basic] is a view: the sums land in full
    return full


# Checks and window geometry that several op families share.

def check_same_float_dtype(op, **arrays):
    """Products do not mix float32 and float64 silently (PyTorch refuses too)."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{op}: inputs must have one dtype, got {listed}; convert with .to(dtype)")
    for name, a in arrays.items():
        if not is_floating(a.dtype):
            raise TypeError(f"{op}: expected floating-point inputs, {name} is {a.dtype}")


def as_pair(value, name, op):
    """An int or a pair of ints as a pair: ``3`` -> ``(3, 3)``."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, numbers.Integral) for v in value)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return int(value[0]), int(value[1])


def window_span(kernel_size, dilation=(1, 1)):
    """The extent of a dilated window along each axis: d (k - 1) + 1 pixels."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))


def check_windows(op, x, kernel_size, padding, dilation=(1, 1)):
    """x must be NCHW, and the (dilated) kernel must fit inside it once padded."""
    if x.ndim != 4:
        raise ShapeError(f"{op}: expected input of shape (N, C, H, W), got {x.shape}")
    (top, bottom), (left, right) = padding
    padded_size = (x.shape[2] + top + bottom, x.shape[3] + left + right)
    span = window_span(kernel_size, dilation)
    if span[0] > padded_size[0] or span[1] > padded_size[1]:
        kernel = f"kernel {kernel_size}" if span == tuple(kernel_size) else \
            f"kernel {kernel_size} with dilation {dilation} spans {span}, which"
        raise ShapeError(f"{op}: {kernel} is larger than the padded input {padded_size} "
                         f"(input {x.shape}, padding {padding})")


def pad2d(x, padding, value=0):
    """Pad the last two axes by ((top, bottom), (left, right)) with ``value`` (no copy if all zero)."""
    (top, bottom), (left, right) = padding
    if not (top or bottom or left or right):
        return x
    xp = get_array_module(x)
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return xp.pad(x, widths, constant_values=value)


def window_slices(kernel_size, stride, out_size, dilation=(1, 1)):
    """For each offset (i, j) in the kernel, the slice of the padded image holding entry (i, j) of every window.

    A list of ((i, j), slice) pairs in row-major order of (i, j); entry (i, j)
    of the window at (y, x) is pixel (sh y + dh i, sw x + dw j).
    """
    (kernel_h, kernel_w), (stride_h, stride_w), (out_h, out_w) = kernel_size, stride, out_size
    dilation_h, dilation_w = dilation
    return [((i, j), (..., slice(dilation_h * i, dilation_h * i + stride_h * out_h, stride_h),
                      slice(dilation_w * j, dilation_w * j + stride_w * out_w, stride_w)))
            for i in range(kernel_h) for j in range(kernel_w)]


def output_size(size, kernel_size, stride, padding, dilation=(1, 1)):
    """Windows along each axis: (H + top + bottom - dH (kH - 1) - 1) // sh + 1, and likewise for W."""
    return tuple((n + before + after - span) // s + 1
                 for n, span, s, (before, after) in zip(size, window_span(kernel_size, dilation), stride, padding))


class Dilate2d(Function):
    """x's last two axes spread ``stride`` apart in zeros of ``size``, the first entry at ``offset``.

    out[..., top + sh y, left + sw x] = x[..., y, x], 0 everywhere else:
    dilation and zero padding in one node (stride 1 is plain padding). The
    convolution's textbook rule uses it to put the output gradient back at
    the stride of its windows and to pad the input.
    """

    def __init__(self, stride, offset, size):
        self.stride, self.offset, self.size = tuple(stride), tuple(offset), tuple(size)

    def places(self, shape):
        """The strided slice of the output that holds x (of ``shape``)."""
        (top, left), (stride_h, stride_w), (h, w) = self.offset, self.stride, shape[-2:]
        return (..., slice(top, top + stride_h * (h - 1) + 1, stride_h),
                slice(left, left + stride_w * (w - 1) + 1, stride_w))

    def forward(self, x):
        self.in_shape = x.shape
        out = get_array_module(x).zeros(x.shape[:-2] + self.size, dtype=x.dtype)
        out[self.places(x.shape)] = x
        return out

    def backward(self, grad):
        # linear, d out[top + sh y, left + sw x] / d x[y, x] = 1: read those places back (a strided slice)
        return grad[self.places(self.in_shape)]
