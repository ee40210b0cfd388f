"""Fast shape rules: reshape's, transpose's, indexing's, cast's and device copies' gradients on raw arrays.

Each puts the gradient back where the value came from, as the textbook rule
(``ops/shape.py``) does, without recording a graph node per step.
"""
from .. import backend
from ..ops import common, shape as textbook


class Reshape(textbook.Reshape):
    def backward_arrays(self, grad):
        # the same values in the input's shape
        return grad.reshape(self.in_shape)


class Transpose(textbook.Transpose):
    def backward_arrays(self, grad):
        # the inverse permutation sends each axis back
        return grad.transpose(self.inverse(grad.ndim))


class GetItem(textbook.GetItem):
    def backward_arrays(self, grad):
        # each element's gradient added back where it was taken from (repeats summed)
        return common.scatter_add(grad, self.in_shape, self.basic, self.advanced)


class Cast(textbook.Cast):
    def backward_arrays(self, grad):
        # the identity on values, back in the input's dtype
        return grad.astype(self.in_dtype)


class ToDevice(textbook.ToDevice):
    def backward_arrays(self, grad):
        # the identity on values, back on the input's device
        return backend.to_device(grad, self.in_device)


DROP_INS = {textbook.Reshape: Reshape, textbook.Transpose: Transpose, textbook.GetItem: GetItem,
            textbook.Cast: Cast, textbook.ToDevice: ToDevice}
