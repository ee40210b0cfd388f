"""Fused CuPy kernels for the nodes that NumPy idioms make slow on a GPU.

On the CPU a loop of kH kW slice copies (im2col) or ten small array
expressions (Adam) costs little next to the matrix products. On a GPU each
of those lines is a kernel launch of a few microseconds, and a training step
of a small network is made of launches: fusing them is the speed-up. Each
kernel below computes exactly what the NumPy code beside its caller
computes (the GPU tests compare the two), in one launch.

This module is imported only when an op meets a CuPy array; the kernels are
compiled on first use and cached by CuPy.
"""
import functools


@functools.lru_cache(maxsize=None)
def _kernels():
    import cupy
    kernels = {}
    # cols[(c, i, j, b, oy, ox)] = x[b, c, oy sh + i - top, ox sw + j - left], 0 in the padding
    kernels["im2col"] = cupy.ElementwiseKernel(
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
        "minigrad_im2col")
    # The adjoint, gathered: each input pixel sums the entries of the windows that cover it,
    # in a fixed order, so no atomics and the same result every run.
    kernels["col2im"] = cupy.ElementwiseKernel(
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
        "minigrad_col2im")
    kernels["relu_backward"] = cupy.ElementwiseKernel(
        "T grad, T y", "T grad_x", "grad_x = y > (T)0 ? grad : (T)0", "minigrad_relu_backward")
    # optim.Adam.update in one pass over p, m, v (same operations, same order)
    kernels["adam"] = cupy.ElementwiseKernel(
        "T grad, T beta1, T beta2, T bias_correction2_sqrt, T eps, T step_size",
        "T p, T m, T v",
        """
        m = beta1 * m + ((T)1 - beta1) * grad;
        v = beta2 * v + ((T)1 - beta2) * grad * grad;
        p -= step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps));
        """,
        "minigrad_adam")
    return kernels


def _geometry(n, c, h, w, kernel_size, stride, padding, out_size):
    (kernel_h, kernel_w), (stride_h, stride_w), ((top, _), (left, _)) = kernel_size, stride, padding
    return (n, c, h, w, kernel_h, kernel_w, *out_size, stride_h, stride_w, top, left)


def im2col(x, kernel_size, stride, padding, out_size):
    """conv.im2col on a CuPy array: (C, kH, kW, N, Ho, Wo) in one launch."""
    import cupy
    n, c, h, w = x.shape
    cols = cupy.empty((c, *kernel_size, n, *out_size), dtype=x.dtype)
    _kernels()["im2col"](cupy.ascontiguousarray(x), *_geometry(n, c, h, w, kernel_size, stride, padding, out_size),
                         cols)
    return cols


def col2im(cols, x_shape, stride, padding):
    """conv.col2im on a CuPy array: dL/dx (N, C, H, W) from dL/dcols in one launch."""
    import cupy
    c, kernel_h, kernel_w, n, out_h, out_w = cols.shape
    grad_x = cupy.empty(x_shape, dtype=cols.dtype)
    _kernels()["col2im"](cupy.ascontiguousarray(cols),
                         *_geometry(n, c, *x_shape[2:], (kernel_h, kernel_w), stride, padding, (out_h, out_w)),
                         grad_x)
    return grad_x


def relu_backward(grad, y):
    return _kernels()["relu_backward"](grad, y)


def adam_update(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size):
    """One Adam step on CuPy arrays p, m, v (updated in place)."""
    _kernels()["adam"](grad, beta1, beta2, bias_correction2_sqrt, eps, step_size, p, m, v)
