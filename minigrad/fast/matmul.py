"""Fast matrix-product rules: ``a @ b``'s and ``linear``'s first-order gradients on raw arrays.

The same products as the textbook rules (``ops/matmul.py``), computed on the
arrays without recording a graph node per step.
"""
from ..backend import get_array_module
from ..ops import matmul as textbook
from .elementwise import unbroadcast


class MatMul(textbook.MatMul):
    def backward_arrays(self, grad):
        a, b = self.saved
        xp = get_array_module(a)
        # Vectors act as a row (a) or a column (b) matrix; restore that shape first.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:
            grad = grad[..., None]
        if a.ndim == 1:
            grad = grad[..., None, :]
        grad_a = grad_b = None
        if self.needs_input_grad[0]:  # dL/dA = dL/dC B^T
            grad_a = unbroadcast(xp.matmul(grad, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:  # dL/dB = A^T dL/dC
            grad_b = unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), grad), b2.shape).reshape(b.shape)
        return grad_a, grad_b


class Linear(textbook.Linear):
    def backward_arrays(self, grad):
        # y = x W^T + b: dL/dx = dL/dy W, dL/dW = dL/dy^T x, dL/db = sum of dL/dy over rows
        x, weight = self.saved
        grad_x = grad @ weight if self.needs_input_grad[0] else None
        grad_w = grad_b = None
        rows = grad.reshape(-1, grad.shape[-1])
        if self.needs_input_grad[1]:
            grad_w = rows.T @ x.reshape(-1, x.shape[-1])
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_b = rows.sum(axis=0)
        return grad_x, grad_w, grad_b


DROP_INS = {textbook.MatMul: MatMul, textbook.Linear: Linear}
