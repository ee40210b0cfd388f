"""What the textbook backward rules share: constants, broadcasting and its undoing, masks, scatters.

Each helper here is itself a graph node whose own textbook rule is the
adjoint of its forward (broadcasting and summing back, gathering and
scattering, keeping under a mask), so any rule built from them can be
differentiated again, as often as asked.
"""
from ..autograd import Function
from ..backend import get_array_module


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
        from .shape import scatter_add  # the one NumPy/CuPy scatter, shared with GetItem's array rule
        return scatter_add(x, self.shape, self.basic, self.advanced)

    def backward(self, grad):
        return grad[self.index]
