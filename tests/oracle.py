"""The two checks every op gets: finite differences, and PyTorch as the oracle.

``check_op(mg_fn, torch_fn, *arrays)`` runs the op in float64 on both
frameworks from the same arrays, compares the outputs, then back-propagates
the same random output gradient through both and compares every input's
gradient. ``check_grad(mg_fn, *arrays)`` runs ``mg.utils.gradcheck``. Integer
arrays (labels) are passed along without gradients. Adding an op's test is
one line in a table of cases.
"""
import numpy as np
import pytest

import minigrad as mg

try:
    import torch
except ImportError:
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the test oracle) is not installed")


def _is_float(array):
    return np.issubdtype(np.asarray(array).dtype, np.floating)


def mg_inputs(arrays):
    return [mg.tensor(a, requires_grad=_is_float(a)) for a in arrays]


def check_grad(mg_fn, *arrays, **tolerances):
    """Finite-difference check of every float input (arrays must be float64)."""
    assert mg.utils.gradcheck(mg_fn, *mg_inputs(arrays), **tolerances)


def check_op(mg_fn, torch_fn, *arrays, rtol=1e-7, atol=1e-10, seed=0):
    """Forward and gradients of ``mg_fn`` equal those of ``torch_fn`` on the same inputs."""
    if torch is None:
        pytest.skip("PyTorch (the test oracle) is not installed")
    mine = mg_inputs(arrays)
    theirs = [torch.tensor(np.asarray(a), requires_grad=_is_float(a)) for a in arrays]
    out = mg_fn(*mine)
    expected = torch_fn(*theirs)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg="forward differs from PyTorch")
    assert out.shape == tuple(expected.shape)
    if not out.requires_grad:
        return
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(mg.tensor(upstream, dtype=out.dtype))
    expected.backward(torch.tensor(upstream, dtype=expected.dtype))
    for i, (m, t) in enumerate(zip(mine, theirs)):
        if t.requires_grad:
            assert m.grad is not None, f"input {i} got no gradient"
            np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"gradient of input {i} differs from PyTorch")


def randn(*shape, seed=0):
    """float64 test data, reproducible per seed."""
    return np.asarray(np.random.default_rng(seed).standard_normal(shape))
