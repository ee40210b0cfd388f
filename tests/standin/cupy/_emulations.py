"""NumPy emulations of minigrad's CUDA kernels (minigrad/fast/cuda_kernels.py), by kernel name.

Each takes the kernel's parameters by name, as NumPy arrays or NumPy scalars
of the declared types, and writes its outputs in place. Each is written from
the kernel's CUDA source, not from minigrad's NumPy code, so that the test
comparing the two (tests/test_gpu.py) checks one against the other.
"""
import numpy


def im2col(x, n, c, h, w, kh, kw, oh, ow, sh, sw, top, left, cols):
    x = x.reshape(n, c, h, w)
    ch, ki, kj, b, oy, ox = numpy.indices(cols.shape, sparse=True)
    row, col = oy * sh + ki - top, ox * sw + kj - left
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    cols[...] = numpy.where(inside, x[b, ch, row.clip(0, h - 1), col.clip(0, w - 1)], 0)


def col2im(cols, n, c, h, w, kh, kw, oh, ow, sh, sw, top, left, grad_x):
    """Each pixel sums its windows' entries in the kernel's order (ki, then kj), one rounding per add."""
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    b, ch, py, px = numpy.indices(grad_x.shape, sparse=True)
    total = numpy.zeros(grad_x.shape, grad_x.dtype)
    for ki in range(kh):
        oy = py + top - ki
        oy_ok = (oy >= 0) & (oy % sh == 0) & (oy // sh < oh)
        for kj in range(kw):
            ox = px + left - kj
            ok = oy_ok & (ox >= 0) & (ox % sw == 0) & (ox // sw < ow)
            term = cols[ch, ki, kj, b, (oy // sh).clip(0, oh - 1), (ox // sw).clip(0, ow - 1)]
            total = numpy.where(ok, total + term, total)
    grad_x[...] = total


def relu_backward(grad, y, grad_x):
    grad_x[...] = numpy.where(y <= 0, grad.dtype.type(0), grad)


def adam(grad, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, step_size, p, m, v):
    scratch = grad * one_minus_beta1
    m[...] = m * beta1 + scratch
    scratch = grad * grad
    scratch = scratch * one_minus_beta2
    v[...] = v * beta2 + scratch
    scratch = numpy.sqrt(v) / bias_correction2_sqrt + eps
    scratch = m / scratch
    p[...] = p - scratch * step_size


def uniform(key, u):
    """splitmix64(key + (i + 1) golden) for element i (uint64 arithmetic wraps, as in C), scaled to [0, 1)."""
    i = numpy.arange(u.size, dtype=numpy.uint64)
    z = key + (i + numpy.uint64(1)) * numpy.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> numpy.uint64(30))) * numpy.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> numpy.uint64(27))) * numpy.uint64(0x94D049BB133111EB)
    z = z ^ (z >> numpy.uint64(31))
    if u.dtype == numpy.float32:
        values = (z >> numpy.uint64(40)).astype(numpy.float32) * numpy.float32(1 / 16777216)
    else:
        values = (z >> numpy.uint64(11)).astype(numpy.float64) * (1 / 9007199254740992)
    u[...] = values.reshape(u.shape)


KERNELS = {"minigrad_im2col": im2col, "minigrad_col2im": col2im, "minigrad_relu_backward": relu_backward,
           "minigrad_adam": adam, "minigrad_uniform": uniform}
