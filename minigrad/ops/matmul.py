"""Matrix products: ``a @ b`` and the fully connected layer ``linear``.

For C = A B (A is m x k, B is k x n): C_ij = sum_p A_ip B_pj, so
dL/dA_ip = sum_j dL/dC_ij B_pj, i.e. dL/dA = dL/dC B^T, and likewise
dL/dB = A^T dL/dC. Batched products follow the same rule per matrix, with
any broadcast batch axes summed away.
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import get_array_module
from .common import check_same_float_dtype, sum_to


class MatMul(Function):
    def forward(self, a, b):
        check_same_float_dtype("matmul", a=a, b=b)
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError(f"matmul: both inputs need at least one dimension, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else -1]:
            raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not fit: the last axis of the first "
                             f"({a.shape[-1]}) must equal the {'second-to-' if b.ndim > 1 else ''}last of the second")
        self.save_for_backward(a, b)
        xp = get_array_module(a)
        try:
            return xp.matmul(a, b)
        except ValueError:
            raise ShapeError(f"matmul: batch axes of shapes {a.shape} and {b.shape} cannot be broadcast") from None

    def backward(self, grad):
        """C = A B: dL/dA = dL/dC B^T, dL/dB = A^T dL/dC, summed over broadcast batch axes.

        A vector acts as a row (A) or a column (B) matrix: it is given that
        shape first, and the gradient is taken back to the vector's shape.
        """
        a, b = self.inputs
        a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
        b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
        if b.ndim == 1:
            grad = grad.reshape(grad.shape + (1,))
        if a.ndim == 1:
            grad = grad.reshape(grad.shape[:-1] + (1, grad.shape[-1]))
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = sum_to(grad @ b2.transpose(-1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            grad_b = sum_to(a2.transpose(-1, -2) @ grad, b2.shape).reshape(b.shape)
        return grad_a, grad_b


class Linear(Function):
    """y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch."""

    def forward(self, x, weight, bias=None):
        if x.ndim < 1 or weight.ndim != 2:
            raise ShapeError(f"linear: expected weight of shape (out_features, in_features) and input "
                             f"(..., in_features), got input {x.shape}, weight {weight.shape}")
        if x.shape[-1] != weight.shape[1]:
            raise ShapeError(f"linear: input has {x.shape[-1]} features but weight expects "
                             f"{weight.shape[1]} (input {x.shape}, weight {weight.shape})")
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ShapeError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        check_same_float_dtype("linear", input=x, weight=weight, **({} if bias is None else {"bias": bias}))
        self.save_for_backward(x, weight)
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    def backward(self, grad):
        """y = x W^T + b: dL/dx = dL/dy W, dL/dW = dL/dy^T x, dL/db = the sum of dL/dy over rows."""
        x, weight = self.inputs[0], self.inputs[1]
        rows = grad.reshape((-1, grad.shape[-1]))
        grad_x = grad @ weight if self.needs_input_grad[0] else None
        grad_w = rows.T @ x.reshape((-1, x.shape[-1])) if self.needs_input_grad[1] else None
        grad_b = rows.sum(axis=0) if len(self.needs_input_grad) > 2 and self.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b
