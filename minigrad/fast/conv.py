"""Fast Conv2d: Winograd's algorithm, products image by image, threaded copies, CuPy kernels, col2im.

The textbook rule (``ops/conv.py``) takes one grouped matrix product,
out = W2 cols, and differentiates it by flip and dilate, as convolutions.
This drop-in computes the same numbers faster, and its first-order rule is
the product's own (see matmul.py): dL/dW2 = dL/dout cols^T and
dL/dcols = W2^T dL/dout. A pixel was copied into every window that covers
it, so ``col2im``, the adjoint of the copy, adds each column entry back
onto the pixel it came from (dilation only changes which pixel).

Why the batch inside the columns: each of the three products is then a
single large matrix product, which BLAS runs about twice as fast as many
small per-image products; the price is one transpose of the output (O, N,
...) to (N, O, ...), which is cheap next to the products.

Which route a layer takes (``Conv2d.forward``): ungrouped, undilated
stride-1 layers with 16 or more input channels and kernel sides of 3 or 5
on the CPU go through Winograd's algorithm (``winograd.py``, with tiles of
2 only, so that float32 stays about as precise as a direct sum; see
``winograd_tile``); ungrouped layers with short columns (C kH kW <= 32: a
first layer) multiply image by image, so that nothing big is transposed;
every other layer, and every layer on the GPU, takes the single product.
On the CPU im2col's and col2im's copies are shared out among threads; on
the GPU they are fused kernels (``cuda_kernels.py``), except for dilated
layers: those kernels know no dilation, so dilated layers copy by slices
there too.

First order only: ``create_graph`` (or ``mg.config.fast = False`` after
the forward) runs the inherited textbook backward, which reads only what
``prepare`` records.
"""
import numpy as np

from .. import config
from ..backend import get_array_module, is_cupy_array
from ..ops import conv as textbook
from ..ops.common import output_size, pad2d, window_slices
from . import cuda_kernels, winograd
from .cpu import run_in_parallel, run_on_slices
from .norm import channel_sum


def im2col(x, kernel_size, stride, padding, dilation=(1, 1), per_image=False, out=None):
    """``textbook.im2col`` with its kH kW copies shared out among threads, or one CuPy kernel.

    Every kernel window of x (N, C, H, W), as an array of shape (C, kH, kW,
    N, Ho, Wo). ``per_image=True`` gives (N, C, kH, kW, Ho, Wo) instead:
    each image's columns on their own (see ``Conv2d.forward_by_image``);
    ``out``, an array of that shape, receives them (NumPy only).
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    out_h, out_w = output_size(x.shape[2:], kernel_size, stride, padding, dilation)
    if per_image:
        source = pad2d(x, padding)
        cols = xp.empty((n, c, *kernel_size, out_h, out_w), dtype=x.dtype) if out is None else out
        offset = (slice(None), slice(None))  # cols[:, :, i, j]
    elif is_cupy_array(x) and dilation == (1, 1):  # one fused launch instead of kH kW copies
        return cuda_kernels.im2col(x, kernel_size, stride, padding, (out_h, out_w))
    else:
        source = pad2d(x.transpose(1, 0, 2, 3), padding)  # (C, N, H, W)
        cols = xp.empty((c, *kernel_size, n, out_h, out_w), dtype=x.dtype)
        offset = (slice(None),)  # cols[:, i, j]
    windows = window_slices(kernel_size, stride, (out_h, out_w), dilation)

    def copy(part):
        for (i, j), window in part:
            cols[offset + (i, j)] = source[window]
    run_in_parallel(copy, windows, x)
    return cols


def col2im(cols, x_shape, stride, padding, dilation=(1, 1), per_image=False):
    """The adjoint of im2col: sum each entry of cols (C, kH, kW, N, Ho, Wo) back onto its pixel of x_shape.

    Windows overlap when the stride is smaller than the window, so a pixel
    collects one term from every window that covers it; the padding, which
    is no input, is cropped off at the end. On the CPU the channels are
    shared out among threads: each channel's sums stay in one thread, in a
    fixed order, so the result does not depend on the thread count.
    ``per_image=True`` takes im2col's (N, C, kH, kW, Ho, Wo) layout.
    """
    if is_cupy_array(cols) and not per_image and dilation == (1, 1):
        return cuda_kernels.col2im(cols, x_shape, stride, padding)  # one launch, each pixel gathering its terms
    xp = get_array_module(cols)
    if per_image:
        cols = cols.transpose(1, 2, 3, 0, 4, 5)  # a view in the (C, kH, kW, N, Ho, Wo) order of the loop below
    c, kernel_h, kernel_w, n, out_h, out_w = cols.shape
    (top, bottom), (left, right) = padding
    h, w = x_shape[2:]
    padded_size = (h + top + bottom, w + left + right)
    if per_image:  # an (N, C, ...) array, seen as (C, N, ...) by the loop
        padded = xp.zeros((n, c, *padded_size), dtype=cols.dtype).transpose(1, 0, 2, 3)
    else:
        padded = xp.zeros((c, n, *padded_size), dtype=cols.dtype)
    windows = window_slices((kernel_h, kernel_w), stride, (out_h, out_w), dilation)

    def add(channels):  # a run of consecutive channels
        for (i, j), window in windows:
            padded[channels][window] += cols[channels, i, j]
    run_on_slices(add, c, cols)
    return xp.ascontiguousarray(padded[:, :, top:top + h, left:left + w].transpose(1, 0, 2, 3))


def winograd_tile(x, weight, stride):
    """The output tile size m for Winograd's F(m x m, kH x kW), or None to use im2col.

    Winograd needs stride 1 and pays when its products over channels are
    large enough to hide its transforms: at least 16 input channels, kernel
    sides of 3 or 5. The tile is always 2. Bigger tiles need fewer products
    but lose float32 precision: F(4x4, 3x3) and F(4x4, 5x5) round 10 to 20
    times worse than a direct sum, F(3x3, 3x3) and F(2x2, 4x4) about 3 times
    worse, while F(2x2, 3x3) and F(2x2, 5x5) (with ``winograd.PRECISE_POINTS``)
    stay within about twice PyTorch's error (docs/performance.md). Only NumPy
    arrays: on the GPU im2col's fused kernels run. Only float32 and float64:
    in float16 the error would be about 1e-2. ``mg.config.winograd = False``
    keeps every layer on im2col.
    """
    if (not config.winograd or is_cupy_array(x) or stride != (1, 1) or x.shape[1] < 16
            or x.dtype.name not in ("float32", "float64") or not all(k in (3, 5) for k in weight.shape[2:])):
        return None
    return 2


class Conv2d(textbook.Conv2d):
    """Fast Conv2d: Winograd, per-image products or the threaded single product (see the module docstring).

    First order only (``backward_arrays``); ``create_graph`` runs the inherited
    textbook ``backward``, which reads what ``prepare`` recorded.
    """

    def forward(self, x, weight, bias=None):
        self.prepare(x, weight, bias)
        out_channels, group_channels, kernel_h, kernel_w = weight.shape
        plain = self.groups == 1 and self.dilation == (1, 1)
        self.winograd_tile_size = winograd_tile(x, weight, self.stride) if plain else None
        # Few input channels (a first layer: C kH kW of at most 32), on the CPU: one product per
        # image, whose (O, Ho Wo) result is already that image's NCHW output. The cheap products
        # of such a layer cost less than moving its big output, and this way nothing is transposed.
        self.per_image = (not self.winograd_tile_size and self.groups == 1 and not is_cupy_array(x)
                          and group_channels * kernel_h * kernel_w <= 32)
        if self.winograd_tile_size:
            out, transformed = winograd.forward(x, weight, self.padding, self.winograd_tile_size, bias)
            self.save_for_backward(weight, transformed)
            return out
        if self.per_image:
            return self.forward_by_image(x, weight, bias)
        cols = im2col(x, (kernel_h, kernel_w), self.stride, self.padding, self.dilation)
        n, out_h, out_w = cols.shape[3:]
        # kept as the product sees it, cols_g: (g, C/g kH kW, N Ho Wo), a view
        self.save_for_backward(cols.reshape(self.groups, group_channels * kernel_h * kernel_w, n * out_h * out_w),
                               weight)
        return self.product(cols, weight, bias)

    def forward_by_image(self, x, weight, bias):
        """The product image by image, the bias folded in: (W2 b) times (cols; 1).

        A first layer's output is big and its products are cheap (K = C kH kW
        <= 32), so adding the bias in a pass of its own would cost half as
        much as the products (docs/performance.md). As one more column of W2 that meets a row of ones under each
        image's columns, the product adds it for one multiply-add more per
        output; in backward the same column's gradient is dL/db.
        """
        (n, channels), (out_channels, _, kernel_h, kernel_w) = x.shape[:2], weight.shape
        out_h, out_w = output_size(x.shape[2:], (kernel_h, kernel_w), self.stride, self.padding, self.dilation)
        rows = channels * kernel_h * kernel_w
        cols = np.empty((n, rows + (bias is not None), out_h * out_w), dtype=x.dtype)
        im2col(x, (kernel_h, kernel_w), self.stride, self.padding, self.dilation, per_image=True,
               out=cols[:, :rows].reshape(n, channels, kernel_h, kernel_w, out_h, out_w))
        weight_matrix = weight.reshape(out_channels, rows)
        if bias is not None:
            cols[:, rows] = 1
            weight_matrix = np.concatenate([weight_matrix, bias[:, None]], axis=1)
        self.save_for_backward(cols, weight)
        out = weight_matrix @ cols  # (N, O, Ho Wo): W2 times each image's columns
        return out.reshape(n, out_channels, out_h, out_w)

    def backward_arrays(self, grad):
        n, out_channels, out_h, out_w = grad.shape
        wants_bias = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        if self.per_image:
            return self.backward_by_image(grad, wants_bias)
        # b[o] is added to every position of every image in channel o
        grad_bias = channel_sum(grad) if wants_bias else None
        if self.winograd_tile_size:
            weight, transformed = self.saved
            grad_x, grad_weight = winograd.backward(grad, weight, transformed,
                                                    self.needs_input_grad[0], self.needs_input_grad[1])
            return grad_x, grad_weight, grad_bias
        cols, weight = self.saved
        grad_x = grad_weight = None
        weight_matrix = weight.reshape(self.groups, out_channels // self.groups, -1)
        # the gradient in the layout of the product: (g, O/g, N Ho Wo)
        grad = grad.transpose(1, 0, 2, 3).reshape(self.groups, out_channels // self.groups, n * out_h * out_w)
        if self.needs_input_grad[0]:
            # dL/dcols_g = W2_g^T dL/dout_g; col2im adds each column back onto its pixel
            grad_cols = weight_matrix.transpose(0, 2, 1) @ grad
            grad_cols = grad_cols.reshape(self.x_shape[1], *weight.shape[2:], n, out_h, out_w)
            grad_x = col2im(grad_cols, self.x_shape, self.stride, self.padding, self.dilation)
        if self.needs_input_grad[1]:
            # dL/dW2_g = dL/dout_g cols_g^T: sums over the batch and the positions at once
            grad_weight = (grad @ cols.transpose(0, 2, 1)).reshape(weight.shape)
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
            grad_x = col2im(grad_cols, self.x_shape, self.stride, self.padding, self.dilation, per_image=True)
        if self.needs_input_grad[1] or wants_bias:
            grad_both = (grad @ cols.transpose(0, 2, 1)).sum(axis=0)  # (O, rows + 1 if a bias)
            if self.needs_input_grad[1]:
                grad_weight = grad_both[:, :rows].reshape(weight.shape)
            if wants_bias:
                grad_bias = grad_both[:, rows]
        return grad_x, grad_weight, grad_bias


DROP_INS = {textbook.Conv2d: Conv2d}
