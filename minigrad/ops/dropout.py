"""Dropout: during training, zero each element with probability p.

Inverted dropout scales the survivors by 1/(1-p), so each element's expected
value is unchanged and inference needs no rescaling (the functional wrapper
returns x itself when not training).
"""
import numbers

from ..autograd import Function
from ..backend import generator, get_array_module, is_floating
from .common import constant


def check_probability(p, op="dropout"):
    """p must be a number in [0, 1] (NaN is not); the one check that F.dropout and nn.Dropout make too."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{op}: p is the probability of zeroing an element and must be "
                         f"in [0, 1], got {p!r} (TF's keep_prob k is p = 1 - k)")
    return p


class Dropout(Function):
    def __init__(self, p=0.5):
        self.p = check_probability(p)

    def forward(self, x):
        if not is_floating(x.dtype):
            raise TypeError(f"dropout: expected a floating-point input, got {x.dtype}")
        xp = get_array_module(x)
        if self.p == 1:
            mask = xp.zeros_like(x)  # everything dropped: no survivors to scale by 1/0
        else:
            keep = generator(xp).random(x.shape) >= self.p  # True with probability 1 - p
            mask = keep.astype(x.dtype) * (1 / (1 - self.p))
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):
        """y = x mask with the mask (0 or 1 / (1 - p)) drawn in forward: dL/dx = g mask.

        The mask is a constant of this node, so the rule is linear in g and
        differentiating it again gives 0 with respect to x.
        """
        mask, = self.saved
        return grad * constant(mask)
