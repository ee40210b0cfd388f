"""Check backward rules against finite differences.

For a scalar function L(x), the central difference
(L(x + eps e_i) - L(x - eps e_i)) / (2 eps) approximates dL/dx_i with an
error of order eps^2. To check an op y = f(x) with a tensor output, we pick a
fixed random weighting v and check L = sum(v * f(x)): its gradient, v
pushed back through every backward rule, must equal the finite differences
of L for every element of every input. A wrong rule shows up for almost any
v, and it costs one backward and two forward passes per input element.
"""
import numpy as np

from .. import backend
from ..autograd import no_grad


class GradcheckError(RuntimeError):
    """A backward rule disagrees with finite differences."""


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """True if the gradients of ``fn(*inputs)`` match central differences; else raise.

    ``inputs`` are tensors; those with ``requires_grad=True`` are checked and
    must be float64 (float32 rounding swamps the finite differences).
    ``fn`` returns a tensor. The error names the input and the worst element.
    """
    from ..tensor import Tensor
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 "
                             "(finite differences in float32 are too coarse to compare)")
    output = fn(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, it returned {type(output).__name__}")
    xp = backend.get_array_module(output.data)
    weights = xp.asarray(np.random.default_rng(0).standard_normal(output.shape))

    def weighted_sum():
        with no_grad():
            return float((fn(*inputs).data * weights).sum())

    for i in checked:
        inputs[i].grad = None
        # the nudging below writes through a flat view, which needs contiguous data
        if not inputs[i].data.flags.c_contiguous:
            inputs[i].data = inputs[i].data.copy()
    output.backward(weights.astype(output.dtype))

    for i in checked:
        tensor = inputs[i]
        analytic = np.zeros(tensor.shape) if tensor.grad is None else tensor.grad.numpy()
        numeric = central_differences(weighted_sum, tensor, eps)
        compare(analytic, numeric, atol, rtol, f"gradcheck: input {i} (shape {tensor.shape})",
                "backward gives", "finite differences give")
    return True


def central_differences(value, tensor, eps):
    """(value() at x + eps e_j - value() at x - eps e_j) / (2 eps) for every element j of ``tensor``.

    ``tensor``'s array is nudged in place, through a flat view (so it must be
    contiguous), and put back after each element.
    """
    numeric = np.zeros(tensor.shape)
    flat = tensor.data.reshape(-1)  # a view: nudging it nudges the input
    for j in range(flat.size):
        original = float(flat[j])
        flat[j] = original + eps
        plus = value()
        flat[j] = original - eps
        minus = value()
        flat[j] = original
        numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
    return numeric


def compare(analytic, numeric, atol, rtol, where, analytic_says, numeric_says):
    """Raise GradcheckError naming the worst element if |analytic - numeric| > atol + rtol |numeric| anywhere."""
    error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if (error > 0).any():
        worst = np.unravel_index(np.argmax(error), numeric.shape)
        raise GradcheckError(
            f"{where} at index {tuple(int(k) for k in worst)}: {analytic_says} {analytic[worst]:.8g}, "
            f"{numeric_says} {numeric[worst]:.8g} ({int((error > 0).sum())} of {error.size} elements off)")


def gradgradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """True if the second derivatives of ``fn(*inputs)`` match central differences of the first; else raise.

    The first derivatives g_i = d(sum(v * fn))/dx_i are computed with
    ``create_graph=True`` and weighted by fixed random u_i into one scalar
    S = sum_i sum(u_i * g_i); the gradient of S (a Hessian-vector product,
    through the textbook rules' own graph) must equal the central
    differences of S, which need first derivatives only. Inputs as for
    ``gradcheck``: float64 tensors, those with ``requires_grad=True`` checked.
    """
    from ..autograd import grad
    from ..tensor import Tensor
    checked = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradgradcheck: no input has requires_grad=True, so there is nothing to check")
    for number, tensor in enumerate(checked):
        if tensor.dtype != np.float64:
            raise ValueError(f"gradgradcheck: checked input {number} is {tensor.dtype}; use float64")
        if not tensor.data.flags.c_contiguous:
            tensor.data = tensor.data.copy()
    output = fn(*inputs)
    xp = backend.get_array_module(output.data)
    rng = np.random.default_rng(0)
    v = Tensor._from_array(xp.asarray(rng.standard_normal(output.shape)).astype(output.dtype))
    us = [xp.asarray(rng.standard_normal(t.shape)) for t in checked]

    def weighted_gradients(create_graph):
        return grad(fn(*inputs), checked, grad_outputs=v, create_graph=create_graph, allow_unused=True)

    def s_value():
        gradients = weighted_gradients(create_graph=False)
        return sum(float((g.data * u).sum()) for g, u in zip(gradients, us) if g is not None)

    gradients = weighted_gradients(create_graph=True)
    terms = [(g * Tensor._from_array(u)).sum() for g, u in zip(gradients, us) if g is not None]
    if not terms or not any(t.requires_grad for t in terms):
        analytic = [np.zeros(t.shape) for t in checked]  # every first derivative is constant
    else:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        second = grad(total, checked, allow_unused=True)
        analytic = [np.zeros(t.shape) if s is None else s.numpy() for s, t in zip(second, checked)]

    for number, (tensor, expected) in enumerate(zip(checked, analytic)):
        compare(expected, central_differences(s_value, tensor, eps), atol, rtol,
                f"gradgradcheck: input {number} (shape {tensor.shape})", "the second derivative gives",
                "finite differences of the first give")
    return True
