"""2-D convolution as one matrix product: im2col, Conv2d, col2im.

A convolution layer (a cross-correlation, as in every framework) computes,
for input x padded to ``padded`` and stride (sh, sw),

    out[n, o, y, x] = b[o] + sum_{c,i,j} W[o, c, i, j] padded[n, c, sh y + i, sw x + j].

``im2col`` copies every kernel window into a column,
cols[(c, i, j), (n, y, x)] = padded[n, c, sh y + i, sw x + j], so that
out = W2 cols with W2 = W.reshape(O, C kH kW): one matrix product for the
whole batch. Backward is that product's rule (see matmul.py):
dL/dW2 = dL/dout cols^T and dL/dcols = W2^T dL/dout. A pixel was copied
into every window that covers it, so ``col2im``, the adjoint of the copy,
adds each column entry back onto the pixel it came from.

Why this layout: with the batch inside the columns, each of the three
products is a single large matrix product, which BLAS runs about twice as
fast as 64 small per-image products; the price is one transpose of the
output (O, N, ...) to (N, O, ...), which is cheap next to the products.

Which route a layer takes (``Conv2d.forward``): stride-1 layers with 16 or
more input channels on the CPU go through Winograd's algorithm
(``winograd.py``, a third to a sixth of the multiplications); layers with
short columns (C kH kW <= 32: a first layer) multiply image by image, so
that nothing big is transposed; every other layer, and every layer on the
GPU, takes the single product above.
"""
import numbers
import os

import numpy as np

from ..autograd import Function
from ..backend import get_array_module, is_cupy_array, run_in_parallel, run_on_slices
from . import kernels_cuda, winograd
from .matmul import check_same_float_dtype
from .norm import channel_sum

# Stride-1 convolutions on the CPU go through Winograd's algorithm when it
# saves work (see ``winograd_tile``); False keeps every convolution on im2col.
# $MINIGRAD_WINOGRAD=0 sets it False at import, to compare the two.
USE_WINOGRAD = os.environ.get("MINIGRAD_WINOGRAD", "1") != "0"


def as_pair(value, name, op):
    """An int or a pair of ints as a pair: ``3`` -> ``(3, 3)``."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, numbers.Integral) for v in value)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return int(value[0]), int(value[1])


def check_windows(op, x, kernel_size, padding):
    """x must be NCHW, and the kernel must fit inside it once padded."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W), got {x.shape}")
    (top, bottom), (left, right) = padding
    padded_size = (x.shape[2] + top + bottom, x.shape[3] + left + right)
    if kernel_size[0] > padded_size[0] or kernel_size[1] > padded_size[1]:
        raise ValueError(f"{op}: kernel {kernel_size} is larger than the padded input {padded_size} "
                         f"(input {x.shape}, padding {padding})")


def pad2d(x, padding, value=0):
    """Pad the last two axes by ((top, bottom), (left, right)) with ``value`` (no copy if all zero)."""
    (top, bottom), (left, right) = padding
    if not (top or bottom or left or right):
        return x
    xp = get_array_module(x)
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return xp.pad(x, widths, constant_values=value)


def window_slices(kernel_size, stride, out_size):
    """For each offset (i, j) in the kernel, the slice of the padded image holding entry (i, j) of every window.

    A list of ((i, j), slice) pairs in row-major order of (i, j).
    """
    (kernel_h, kernel_w), (stride_h, stride_w), (out_h, out_w) = kernel_size, stride, out_size
    return [((i, j), (..., slice(i, i + stride_h * out_h, stride_h), slice(j, j + stride_w * out_w, stride_w)))
            for i in range(kernel_h) for j in range(kernel_w)]


def output_size(size, kernel_size, stride, padding):
    """Windows along each axis: (H + top + bottom - kH) // sh + 1, and likewise for W."""
    return tuple((n + before + after - k) // s + 1
                 for n, k, s, (before, after) in zip(size, kernel_size, stride, padding))


def im2col(x, kernel_size, stride, padding, batch_first=False, out=None):
    """Every kernel window of x (N, C, H, W), as an array of shape (C, kH, kW, N, Ho, Wo).

    ``padding`` is ((top, bottom), (left, right)). One strided slice copy per
    kernel offset (i, j), kH kW in all, rather than one per window: the slice
    holds the pixel at offset (i, j) of every window at once. The result is
    contiguous, so reshaping it to (C kH kW, N Ho Wo) costs nothing. On the
    CPU the offsets are shared out among threads (see ``run_in_parallel``).
    ``batch_first=True`` gives (N, C, kH, kW, Ho, Wo) instead: each image's
    columns on their own (see ``Conv2d``); ``out``, an array of that shape,
    receives them (NumPy only).
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    out_h, out_w = output_size(x.shape[2:], kernel_size, stride, padding)
    if batch_first:
        source = pad2d(x, padding)
        cols = xp.empty((n, c, *kernel_size, out_h, out_w), dtype=x.dtype) if out is None else out
        offset = (slice(None), slice(None))  # cols[:, :, i, j]
    elif is_cupy_array(x):  # one fused launch instead of kH kW copies
        return kernels_cuda.im2col(x, kernel_size, stride, padding, (out_h, out_w))
    else:
        source = pad2d(x.transpose(1, 0, 2, 3), padding)  # (C, N, H, W)
        cols = xp.empty((c, *kernel_size, n, out_h, out_w), dtype=x.dtype)
        offset = (slice(None),)  # cols[:, i, j]
    windows = window_slices(kernel_size, stride, (out_h, out_w))

    def copy(part):
        for (i, j), window in part:
            cols[offset + (i, j)] = source[window]
    run_in_parallel(copy, windows, x)
    return cols


def col2im(cols, x_shape, stride, padding, batch_first=False):
    """The adjoint of im2col: sum each entry of cols (C, kH, kW, N, Ho, Wo) back onto its pixel of x_shape.

    Windows overlap when the stride is smaller than the kernel, so a pixel
    collects one term from every window that covers it; the padding, which
    is no input, is cropped off at the end. On the CPU the channels are
    shared out among threads: each channel's sums stay in one thread, in a
    fixed order, so the result does not depend on the thread count.
    ``batch_first=True`` takes im2col's (N, C, kH, kW, Ho, Wo) layout.
    """
    if is_cupy_array(cols) and not batch_first:  # one fused launch, each pixel gathering its windows' terms
        return kernels_cuda.col2im(cols, x_shape, stride, padding)
    xp = get_array_module(cols)
    if batch_first:
        cols = cols.transpose(1, 2, 3, 0, 4, 5)  # a view in the (C, kH, kW, N, Ho, Wo) order of the loop below
    c, kernel_h, kernel_w, n, out_h, out_w = cols.shape
    (top, bottom), (left, right) = padding
    h, w = x_shape[2:]
    padded_size = (h + top + bottom, w + left + right)
    if batch_first:  # an (N, C, ...) array, seen as (C, N, ...) by the loop
        padded = xp.zeros((n, c, *padded_size), dtype=cols.dtype).transpose(1, 0, 2, 3)
    else:
        padded = xp.zeros((c, n, *padded_size), dtype=cols.dtype)
    windows = window_slices((kernel_h, kernel_w), stride, (out_h, out_w))

    def add(channels):  # a run of consecutive channels
        for (i, j), window in windows:
            padded[channels][window] += cols[channels, i, j]
    run_on_slices(add, c, cols)
    return xp.ascontiguousarray(padded[:, :, top:top + h, left:left + w].transpose(1, 0, 2, 3))


def same_padding(kernel_size):
    """Padding that keeps H and W at stride 1: k - 1 in total, the extra one (even k) at the bottom/right.

    TF/Keras ``padding="same"`` and PyTorch ``padding="same"`` split it the same way.
    """
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)


def winograd_tile(x, weight, stride, out_size):
    """The output tile size m for Winograd's F(m x m, kH x kW), or None to use im2col.

    Winograd needs stride 1 and pays when its products over channels are
    large enough to hide its transforms: at least 16 input channels, kernel
    sides of 3 to 5. Among tiles of 2, 3 and 4 it takes the one with the
    fewest products (tiles x (m + kH - 1)(m + kW - 1)); bigger tiles need
    fewer products but round the output up to whole tiles and lose float32
    precision, which is why it stops at 4 (F(4x4, 5x5) is about 1e-5 of the
    output's scale). Only NumPy arrays: on the GPU im2col's fused kernels run.
    Only float32 and float64: in float16 that error would be about 1e-2.
    """
    kernel_size = weight.shape[2:]
    if (not USE_WINOGRAD or is_cupy_array(x) or stride != (1, 1) or x.shape[1] < 16
            or x.dtype.name not in ("float32", "float64") or not all(3 <= k <= 5 for k in kernel_size)):
        return None

    def products(m):
        tiles_h, tiles_w = winograd.tile_grid(out_size, m)
        return tiles_h * tiles_w * (m + kernel_size[0] - 1) * (m + kernel_size[1] - 1)
    return min((4, 3, 2), key=products)


class Conv2d(Function):
    """2-D convolution of NCHW input with weight (out_channels, in_channels, kH, kW).

    ``padding`` is an int, a pair (rows, columns), ``"same"`` (stride 1 only)
    or ``"valid"`` (no padding), the last two as TF/Keras spell them. Keras
    stores its kernel as (kH, kW, in_channels, out_channels) and its images as
    NHWC; transpose both to use its weights here.
    """

    def __init__(self, stride=1, padding=0):
        self.stride = as_pair(stride, "stride", "conv2d")
        if min(self.stride) < 1:
            raise ValueError(f"conv2d: stride must be at least 1, got {stride!r}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"conv2d: padding='same' is not supported for strided convolutions "
                                 f"(stride {self.stride}); give the padding as numbers")
            self.padding = padding if padding == "same" else ((0, 0), (0, 0))
        else:
            rows, columns = as_pair(padding, "padding", "conv2d")
            if rows < 0 or columns < 0:
                raise ValueError(f"conv2d: padding must not be negative, got {padding!r}")
            self.padding = ((rows, rows), (columns, columns))

    def forward(self, x, weight, bias=None):
        if weight.ndim != 4:
            raise ValueError(f"conv2d: expected weight of shape (out_channels, in_channels, kH, kW), "
                             f"got {weight.shape} (input {x.shape})")
        out_channels, in_channels, kernel_h, kernel_w = weight.shape
        if self.padding == "same":  # now that the kernel size is known
            self.padding = same_padding((kernel_h, kernel_w))
        check_windows("conv2d", x, (kernel_h, kernel_w), self.padding)
        if x.shape[1] != in_channels:
            raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight expects {in_channels} "
                             f"(input {x.shape}, weight {weight.shape})")
        if bias is not None and bias.shape != (out_channels,):
            raise ValueError(f"conv2d: bias must have shape ({out_channels},) to match weight "
                             f"{weight.shape}, got {bias.shape}")
        check_same_float_dtype("conv2d", input=x, weight=weight, **({} if bias is None else {"bias": bias}))
        xp = get_array_module(x)
        self.tile = winograd_tile(x, weight, self.stride,
                                  output_size(x.shape[2:], (kernel_h, kernel_w), self.stride, self.padding))
        # Few input channels (a first layer: C kH kW of at most 32), on the CPU: one product per
        # image, whose (O, Ho Wo) result is already that image's NCHW output. The cheap products
        # of such a layer cost less than moving its big output, and this way nothing is transposed.
        self.batch_first = not self.tile and not is_cupy_array(x) and in_channels * kernel_h * kernel_w <= 32
        self.x_shape = x.shape
        if self.tile:
            out, transformed = winograd.forward(x, weight, self.padding, self.tile, bias)
            self.save_for_backward(weight, transformed)
            return out
        if self.batch_first:
            return self.forward_by_image(x, weight, bias)
        weight_matrix = weight.reshape(out_channels, -1)  # W2
        cols = im2col(x, (kernel_h, kernel_w), self.stride, self.padding)
        n, out_h, out_w = x.shape[0], cols.shape[-2], cols.shape[-1]
        cols = cols.reshape(in_channels * kernel_h * kernel_w, n * out_h * out_w)
        self.save_for_backward(cols, weight)
        out = weight_matrix @ cols  # (O, N Ho Wo)
        if bias is not None:
            out += bias[:, None]
        return xp.ascontiguousarray(out.reshape(out_channels, n, out_h, out_w).transpose(1, 0, 2, 3))

    def forward_by_image(self, x, weight, bias):
        """The product image by image, the bias folded in: (W2 b) times (cols; 1).

        A first layer's output is big and its products are cheap (K = C kH kW
        <= 32), so adding the bias in a pass of its own cost half as much as
        the products (measured: 2.0 ms against 4.0 ms for cifar_bn's first
        layer). As one more column of W2 that meets a row of ones under each
        image's columns, the product adds it for one multiply-add more per
        output; in backward the same column's gradient is dL/db.
        """
        (n, channels), (out_channels, _, kernel_h, kernel_w) = x.shape[:2], weight.shape
        out_h, out_w = output_size(x.shape[2:], (kernel_h, kernel_w), self.stride, self.padding)
        rows = channels * kernel_h * kernel_w
        cols = np.empty((n, rows + (bias is not None), out_h * out_w), dtype=x.dtype)
        im2col(x, (kernel_h, kernel_w), self.stride, self.padding, batch_first=True,
               out=cols[:, :rows].reshape(n, channels, kernel_h, kernel_w, out_h, out_w))
        weight_matrix = weight.reshape(out_channels, rows)
        if bias is not None:
            cols[:, rows] = 1
            weight_matrix = np.concatenate([weight_matrix, bias[:, None]], axis=1)
        self.save_for_backward(cols, weight)
        out = weight_matrix @ cols  # (N, O, Ho Wo): W2 times each image's columns
        return out.reshape(n, out_channels, out_h, out_w)

    def backward(self, grad):
        n, out_channels, out_h, out_w = grad.shape
        wants_bias = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        if self.batch_first:
            return self.backward_by_image(grad, wants_bias)
        # b[o] is added to every position of every image in channel o
        grad_bias = channel_sum(grad) if wants_bias else None
        if self.tile:
            weight, transformed = self.saved
            grad_x, grad_weight = winograd.backward(grad, weight, transformed,
                                                    self.needs_input_grad[0], self.needs_input_grad[1])
            return grad_x, grad_weight, grad_bias
        cols, weight = self.saved
        grad_x = grad_weight = None
        weight_matrix = weight.reshape(out_channels, -1)
        # the gradient in the layout of the product: (O, N Ho Wo)
        grad = grad.transpose(1, 0, 2, 3).reshape(out_channels, n * out_h * out_w)
        if self.needs_input_grad[0]:
            # dL/dcols = W2^T dL/dout; col2im adds each column back onto its pixel
            grad_cols = weight_matrix.T @ grad
            grad_cols = grad_cols.reshape(self.x_shape[1], *weight.shape[2:], n, out_h, out_w)
            grad_x = col2im(grad_cols, self.x_shape, self.stride, self.padding)
        if self.needs_input_grad[1]:
            # dL/dW2 = dL/dout cols^T: sums over the batch and the positions at once
            grad_weight = (grad @ cols.T).reshape(weight.shape)
        return grad_x, grad_weight, grad_bias

    def backward_by_image(self, grad, wants_bias):
        """``forward_by_image``'s rule, image by image: dL/d(W2 b) = sum over images of dL/dout (cols; 1)^T."""
        cols, weight = self.saved
        n, out_channels, out_h, out_w = grad.shape
        grad = grad.reshape(n, out_channels, out_h * out_w)
        weight_matrix = weight.reshape(out_channels, -1)
        rows = weight_matrix.shape[1]
        grad_x = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            grad_cols = (weight_matrix.T @ grad).reshape(n, self.x_shape[1], *weight.shape[2:], out_h, out_w)
            grad_x = col2im(grad_cols, self.x_shape, self.stride, self.padding, batch_first=True)
        if self.needs_input_grad[1] or wants_bias:
            grad_both = (grad @ cols.transpose(0, 2, 1)).sum(axis=0)  # (O, rows + 1 if a bias)
            if self.needs_input_grad[1]:
                grad_weight = grad_both[:, :rows].reshape(weight.shape)
            if wants_bias:
                grad_bias = grad_both[:, rows]
        return grad_x, grad_weight, grad_bias
