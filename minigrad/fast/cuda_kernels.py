"""Fused CuPy kernels for the nodes that NumPy idioms make slow on a GPU.

On the CPU a loop of kH kW slice copies (im2col) or ten small array
expressions (Adam) costs little next to the matrix products. On a GPU each
of those lines is a kernel launch of a few microseconds, and a training step
of a small network is made of launches: fusing them is the speed-up. Each
kernel below computes what the NumPy code beside its caller computes, in one
launch; the GPU tests compare the two.

The kernels are plain data (``SPECS``: CuPy's ``ElementwiseKernel``
arguments), so that tests can compile every one of them with NVRTC on a
machine without a GPU. This module imports CuPy only when a kernel is first
called; CuPy compiles each kernel on first use and caches it.
"""
import functools
from collections import namedtuple

import numpy as np

# One cupy.ElementwiseKernel: its parameters, its body in CUDA C and NVRTC options.
Kernel = namedtuple("Kernel", "in_params out_params operation name options")

# "--fmad=false": NVRTC would otherwise fuse a * b + c into one rounding, where
# NumPy rounds the product and the sum apart; the kernels must round as NumPy does.
# (CuPy adds -ftz=true to every kernel, its own too: float32 values below 1.2e-38
# flush to 0 on the GPU, the one rounding difference left.)
EXACT = ("--fmad=false",)

SPECS = {
    # cols[(c, i, j, b, oy, ox)] = x[b, c, oy sh + i - top, ox sw + j - left], 0 in the padding
    "im2col": Kernel(
        "raw T x, int32 n, int32 c, int32 h, int32 w, int32 kh, int32 kw, int32 oh, int32 ow, "
        "int32 sh, int32 sw, int32 top, int32 left",
        "T cols",
        """
        long long rest = i;
        const int ox = rest % ow; rest /= ow;
        const int oy = rest % oh; rest /= oh;
        const int b = rest % n; rest /= n;
        const int kj = rest % kw; rest /= kw;
        const int ki = rest % kh;
        const int ch = rest / kh;
        const int row = oy * sh + ki - top;
        const int col = ox * sw + kj - left;
        cols = (row >= 0 && row < h && col >= 0 && col < w)
            ? x[((long long)(b * c + ch) * h + row) * w + col] : (T)0;
        """,
        "minigrad_im2col", ()),
    # The adjoint, gathered: each input pixel sums the entries of the windows that cover it,
    # in a fixed order, so no atomics and the same result every run.
    "col2im": Kernel(
        "raw T cols, int32 n, int32 c, int32 h, int32 w, int32 kh, int32 kw, int32 oh, int32 ow, "
        "int32 sh, int32 sw, int32 top, int32 left",
        "T grad_x",
        """
        long long rest = i;
        const int px = rest % w; rest /= w;
        const int py = rest % h; rest /= h;
        const int ch = rest % c;
        const int b = rest / c;
        T sum = 0;
        for (int ki = 0; ki < kh; ++ki) {
            int oy = py + top - ki;
            if (oy < 0 || oy % sh != 0) continue;
            oy /= sh;
            if (oy >= oh) continue;
            for (int kj = 0; kj < kw; ++kj) {
                int ox = px + left - kj;
                if (ox < 0 || ox % sw != 0) continue;
                ox /= sw;
                if (ox >= ow) continue;
                sum += cols[((((long long)(ch * kh + ki) * kw + kj) * n + b) * oh + oy) * ow + ox];
            }
        }
        grad_x = sum;
        """,
        "minigrad_col2im", ()),
    # ReLU's backward: 0 where y <= 0, even for a NaN or inf gradient, else the upstream gradient
    # (a NaN y too), as PyTorch's threshold_backward
    "relu_backward": Kernel(
        "T grad, T y", "T grad_x", "grad_x = y <= (T)0 ? (T)0 : grad", "minigrad_relu_backward", ()),
    # optim.adam.adam_step in one pass over p, m, v: the same operations in the same order, each
    # rounded on its own; 1 - beta1 and 1 - beta2 come from the host, as NumPy computes them
    "adam": Kernel(
        "T grad, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T bias_correction2_sqrt, "
        "T eps, T step_size",
        "T p, T m, T v",
        """
        T scratch = grad * one_minus_beta1;
        m = m * beta1 + scratch;
        scratch = grad * grad;
        scratch = scratch * one_minus_beta2;
        v = v * beta2 + scratch;
        scratch = sqrt(v) / bias_correction2_sqrt + eps;
        scratch = m / scratch;
        p = p - scratch * step_size;
        """,
        "minigrad_adam", EXACT),
    # Uniform numbers in [0, 1) from a counter: element i of the draw with ``key`` is
    # splitmix64(key + (i + 1) golden), its top 24 (float32) or 53 (float64) bits scaled
    # by 2^-24 or 2^-53; see backend.CounterGenerator.
    "uniform": Kernel(
        "uint64 key", "T u",
        """
        unsigned long long z = key + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z = z ^ (z >> 31);
        u = sizeof(T) == 4 ? (T)((float)(z >> 40) * (1.0f / 16777216.0f))
                           : (T)((double)(z >> 11) * (1.0 / 9007199254740992.0));
        """,
        "minigrad_uniform", ()),
}


@functools.lru_cache(maxsize=None)
def _kernels(cupy):
    """The compiled kernels of one CuPy module (cached per module, so a test can swap CuPy)."""
    return {key: cupy.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation, spec.name,
                                        options=spec.options)
            for key, spec in SPECS.items()}


def kernel(key):
    import cupy
    return _kernels(cupy)[key]


def _geometry(n, c, h, w, kernel_size, stride, padding, out_size):
    (kernel_h, kernel_w), (stride_h, stride_w), ((top, _), (left, _)) = kernel_size, stride, padding
    return (n, c, h, w, kernel_h, kernel_w, *out_size, stride_h, stride_w, top, left)


def im2col(x, kernel_size, stride, padding, out_size):
    """conv.im2col on a CuPy array: (C, kH, kW, N, Ho, Wo) in one launch."""
    import cupy
    n, c, h, w = x.shape
    cols = cupy.empty((c, *kernel_size, n, *out_size), dtype=x.dtype)
    kernel("im2col")(cupy.ascontiguousarray(x), *_geometry(n, c, h, w, kernel_size, stride, padding, out_size),
                     cols)
    return cols


def col2im(cols, x_shape, stride, padding):
    """conv.col2im on a CuPy array: dL/dx (N, C, H, W) from dL/dcols in one launch."""
    import cupy
    c, kernel_h, kernel_w, n, out_h, out_w = cols.shape
    grad_x = cupy.empty(x_shape, dtype=cols.dtype)
    kernel("col2im")(cupy.ascontiguousarray(cols),
                     *_geometry(n, c, *x_shape[2:], (kernel_h, kernel_w), stride, padding, (out_h, out_w)),
                     grad_x)
    return grad_x


def relu_backward(grad, y):
    return kernel("relu_backward")(grad, y)


def adam_update(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size):
    """One Adam step on CuPy arrays p, m, v (updated in place), as optim.adam.adam_step."""
    kernel("adam")(grad, beta1, 1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps, step_size, p, m, v)


def uniform(shape, dtype, key):
    """A CuPy array of ``shape`` of uniform numbers in [0, 1), the draw numbered by ``key`` (a 64-bit int)."""
    import cupy
    out = cupy.empty(shape, dtype=dtype)
    kernel("uniform")(np.uint64(key), out)
    return out
