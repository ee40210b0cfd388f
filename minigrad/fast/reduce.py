"""Fast reduction rules: sum's, mean's, var's and max's first-order gradients on raw arrays.

Each spreads the output's gradient back over its group as the textbook rule
(``ops/reduce.py``) does, without recording a graph node per step: the
reduced axes are put back as 1s and the gradient broadcasts against the input.
"""
from ..backend import get_array_module
from ..ops import reduce as textbook


class Sum(textbook.Sum):
    def backward_arrays(self, grad):
        # every element adds to its group's sum with slope 1
        return get_array_module(grad).broadcast_to(grad.reshape(self.kept_shape()), self.in_shape)


class Mean(textbook.Mean):
    def backward_arrays(self, grad):
        # mean = sum / n: slope 1/n for every element of the group
        xp = get_array_module(grad)
        if self.count == 0:  # the input has no elements to send a gradient to
            return xp.zeros(self.in_shape, dtype=grad.dtype)
        return xp.broadcast_to(grad.reshape(self.kept_shape()) / self.count, self.in_shape)


class Var(textbook.Var):
    def backward_arrays(self, grad):
        # d var/d x_i = 2 (x_i - mean) / d, d = n - correction; PyTorch's inf/NaN pattern where d <= 0
        dof = self.count - self.correction
        if self.count == 0 or dof <= 0:
            return self.grad_without_divisor(grad)
        centered, = self.saved
        return grad.reshape(self.kept_shape()) * (2 / dof) * centered


class Max(textbook.Max):
    def backward_arrays(self, grad):
        # slope 1 for the largest element of each group, shared equally among ties
        return grad.reshape(self.kept_shape()) * self.shares()


DROP_INS = {textbook.Sum: Sum, textbook.Mean: Mean, textbook.Var: Var, textbook.Max: Max}
