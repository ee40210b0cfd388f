"""2-D convolution as one matrix product: im2col, Conv2d, col2im.

A convolution layer (a cross-correlation, as in every framework) computes,
for input x padded to ``padded``, stride (sh, sw) and dilation (dh, dw),

    out[n, o, y, x] = b[o] + sum_{c,i,j} W[o, c, i, j] padded[n, c, sh y + dh i, sw x + dw j].

``im2col`` copies every kernel window into a column,
cols[(c, i, j), (n, y, x)] = padded[n, c, sh y + dh i, sw x + dw j], so that
out = W2 cols with W2 = W.reshape(O, C kH kW): one matrix product for the
whole batch. Backward is that product's rule (see matmul.py):
dL/dW2 = dL/dout cols^T and dL/dcols = W2^T dL/dout. A pixel was copied
into every window that covers it, so ``col2im``, the adjoint of the copy,
adds each column entry back onto the pixel it came from. Dilation only
spreads a window's taps dh and dw pixels apart: it changes which pixel
each copy reads, nothing else. That is the fast array rule
(``backward_arrays``); the textbook rule (``Conv2d.backward``) says the
same with Tensor ops, so that a gradient can be differentiated again: both
gradients are convolutions themselves (needle's flip and dilate), run as
Conv2d nodes, with ``Dilate2d`` spreading the output gradient to the stride.

Groups: with ``groups`` g the channels fall into g consecutive runs, and
output channel o sees only the C / g input channels of its own run
(o // (O / g)), through W[o] of shape (C / g, kH, kW). The rows (c, i, j) of
one run of channels are consecutive in cols, so the layer is g products
side by side, one batched product: out_g = W2_g cols_g with W2 =
W.reshape(g, O / g, C / g kH kW) and cols (g, C / g kH kW, N Ho Wo), and
the same rules per group in backward. A depthwise convolution (g = C) is
the case of one channel per group.

Why this layout: with the batch inside the columns, each of the three
products is a single large matrix product, which BLAS runs about twice as
fast as 64 small per-image products; the price is one transpose of the
output (O, N, ...) to (N, O, ...), which is cheap next to the products.

Which route a layer takes (``Conv2d.forward``): ungrouped, undilated
stride-1 layers with 16 or more input channels and kernel sides of 3 or 5
on the CPU go through Winograd's algorithm (``winograd.py``, with tiles of
2 only, so that float32 stays about as precise as a direct sum; see
``winograd_tile``); ungrouped layers with short columns (C kH kW <= 32: a
first layer) multiply image by image, so that nothing big is transposed;
every other layer, and every layer on the GPU, takes the single product
above. On the GPU im2col and col2im are fused kernels, except for dilated
layers: those kernels know no dilation, so dilated layers copy by slices
there too.
"""
import numbers
import os

import numpy as np

from .. import config
from ..errors import ShapeError
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


def positive_pair(value, name, op):
    """``as_pair`` for sizes that must be at least 1 (kernel size, stride, dilation)."""
    pair = as_pair(value, name, op)
    if min(pair) < 1:
        raise ValueError(f"{op}: {name} must be at least 1, got {value!r}")
    return pair


def conv_options(op, stride, padding, dilation, groups):
    """The checked settings of a convolution: (stride, padding, dilation, groups).

    stride and dilation become pairs; padding ``"same"`` stays a string (its
    size depends on the kernel), anything else becomes ((top, bottom), (left,
    right)). Shared by ``F.conv2d`` (checked when called) and ``nn.Conv2d``
    (checked when built), so both refuse the same settings in the same words.
    """
    stride = positive_pair(stride, "stride", op)
    dilation = positive_pair(dilation, "dilation", op)
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be at least 1, got {groups}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                             f"(stride {stride}); give the padding as numbers")
        padding = padding if padding == "same" else ((0, 0), (0, 0))
    else:
        rows, columns = as_pair(padding, "padding", op)
        if rows < 0 or columns < 0:
            raise ValueError(f"{op}: padding must not be negative, got {padding!r}")
        padding = ((rows, rows), (columns, columns))
    return stride, padding, dilation, int(groups)


def check_channel_counts(op, in_channels, out_channels, groups):
    """A layer's channel counts as ints: each at least 1 and divisible by ``groups``."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{op}: {name} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{op}: {name} must be at least 1, got {value}")
        if value % groups:
            raise ValueError(f"{op}: {name} ({value}) must be divisible by groups ({groups})")
    return int(in_channels), int(out_channels)


def window_span(kernel_size, dilation=(1, 1)):
    """The extent of a dilated window along each axis: d (k - 1) + 1 pixels."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))


def check_windows(op, x, kernel_size, padding, dilation=(1, 1)):
    """x must be NCHW, and the (dilated) kernel must fit inside it once padded."""
    if x.ndim != 4:
        raise ShapeError(f"{op}: expected input of shape (N, C, H, W), got {x.shape}")
    (top, bottom), (left, right) = padding
    padded_size = (x.shape[2] + top + bottom, x.shape[3] + left + right)
    span = window_span(kernel_size, dilation)
    if span[0] > padded_size[0] or span[1] > padded_size[1]:
        kernel = f"kernel {kernel_size}" if span == tuple(kernel_size) else \
            f"kernel {kernel_size} with dilation {dilation} spans {span}, which"
        raise ShapeError(f"{op}: {kernel} is larger than the padded input {padded_size} "
                         f"(input {x.shape}, padding {padding})")


def pad2d(x, padding, value=0):
    """Pad the last two axes by ((top, bottom), (left, right)) with ``value`` (no copy if all zero)."""
    (top, bottom), (left, right) = padding
    if not (top or bottom or left or right):
        return x
    xp = get_array_module(x)
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return xp.pad(x, widths, constant_values=value)


def window_slices(kernel_size, stride, out_size, dilation=(1, 1)):
    """For each offset (i, j) in the kernel, the slice of the padded image holding entry (i, j) of every window.

    A list of ((i, j), slice) pairs in row-major order of (i, j); entry (i, j)
    of the window at (y, x) is pixel (sh y + dh i, sw x + dw j).
    """
    (kernel_h, kernel_w), (stride_h, stride_w), (out_h, out_w) = kernel_size, stride, out_size
    dilation_h, dilation_w = dilation
    return [((i, j), (..., slice(dilation_h * i, dilation_h * i + stride_h * out_h, stride_h),
                      slice(dilation_w * j, dilation_w * j + stride_w * out_w, stride_w)))
            for i in range(kernel_h) for j in range(kernel_w)]


def output_size(size, kernel_size, stride, padding, dilation=(1, 1)):
    """Windows along each axis: (H + top + bottom - dH (kH - 1) - 1) // sh + 1, and likewise for W."""
    return tuple((n + before + after - span) // s + 1
                 for n, span, s, (before, after) in zip(size, window_span(kernel_size, dilation), stride, padding))


def im2col(x, kernel_size, stride, padding, dilation=(1, 1), per_image=False, out=None):
    """Every kernel window of x (N, C, H, W), as an array of shape (C, kH, kW, N, Ho, Wo).

    ``padding`` is ((top, bottom), (left, right)). One strided slice copy per
    kernel offset (i, j), kH kW in all, rather than one per window: the slice
    holds the pixel at offset (i, j) of every window at once. The result is
    contiguous, so reshaping it to (C kH kW, N Ho Wo) costs nothing. On the
    CPU the offsets are shared out among threads (see ``run_in_parallel``).
    ``per_image=True`` gives (N, C, kH, kW, Ho, Wo) instead: each image's
    columns on their own (see ``Conv2d``); ``out``, an array of that shape,
    receives them (NumPy only).
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    out_h, out_w = output_size(x.shape[2:], kernel_size, stride, padding, dilation)
    if per_image:
        source = pad2d(x, padding)
        cols = xp.empty((n, c, *kernel_size, out_h, out_w), dtype=x.dtype) if out is None else out
        offset = (slice(None), slice(None))  # cols[:, :, i, j]
    elif is_cupy_array(x) and dilation == (1, 1):  # one fused launch instead of kH kW copies
        return kernels_cuda.im2col(x, kernel_size, stride, padding, (out_h, out_w))
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
        return kernels_cuda.col2im(cols, x_shape, stride, padding)  # one launch, each pixel gathering its terms
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


def same_padding(kernel_size, dilation=(1, 1)):
    """Padding that keeps H and W at stride 1: d (k - 1) in total, the extra one (odd total) at the bottom/right.

    PyTorch's rule for ``padding="same"``; TF/Keras split it the same way.
    """
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel_size, dilation))


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
    in float16 the error would be about 1e-2.
    """
    if (not USE_WINOGRAD or is_cupy_array(x) or stride != (1, 1) or x.shape[1] < 16
            or x.dtype.name not in ("float32", "float64") or not all(k in (3, 5) for k in weight.shape[2:])):
        return None
    return 2


class Conv2d(Function):
    """2-D convolution of NCHW input with weight (out_channels, in_channels / groups, kH, kW).

    ``padding`` is an int, a pair (rows, columns), ``"same"`` (stride 1 only;
    d (k - 1) in total, the odd one at the bottom/right, as PyTorch) or
    ``"valid"`` (no padding). ``dilation`` puts the kernel's taps d pixels
    apart; ``groups`` splits the channels into that many independent
    convolutions (see the module docstring).
    """

    def __init__(self, stride=1, padding=0, dilation=1, groups=1, fast_routes=True):
        self.stride, self.padding, self.dilation, self.groups = conv_options(
            "conv2d", stride, padding, dilation, groups)
        # False keeps the layer on the single im2col product (no Winograd, no per-image
        # products): the convolutions inside the textbook rule ask for that, and so does
        # mg.config.fast = False
        self.fast_routes = fast_routes and config.fast

    def check_inputs(self, x, weight, bias):
        """The shapes must fit together; the messages name both shapes and the groups."""
        if weight.ndim != 4:
            raise ShapeError(f"conv2d: expected weight of shape (out_channels, in_channels, kH, kW), "
                             f"got {weight.shape} (input {x.shape})")
        if min(weight.shape) < 1:
            raise ValueError(f"conv2d: weight {weight.shape} has a dimension of size 0; out_channels, "
                             f"in_channels / groups, kH and kW must all be at least 1")
        out_channels, group_channels, kernel_h, kernel_w = weight.shape
        if out_channels % self.groups:
            raise ShapeError(f"conv2d: weight {weight.shape} has {out_channels} output channels, "
                             f"which groups={self.groups} does not divide")
        check_windows("conv2d", x, (kernel_h, kernel_w),
                      same_padding((kernel_h, kernel_w), self.dilation) if self.padding == "same" else self.padding,
                      self.dilation)
        if x.shape[1] != group_channels * self.groups:
            expects = str(group_channels) if self.groups == 1 else \
                f"{group_channels * self.groups} (groups={self.groups} of {group_channels})"
            raise ShapeError(f"conv2d: input has {x.shape[1]} channels but weight expects {expects} "
                             f"(input {x.shape}, weight {weight.shape})")
        if bias is not None and bias.shape != (out_channels,):
            raise ShapeError(f"conv2d: bias must have shape ({out_channels},) to match weight "
                             f"{weight.shape}, got {bias.shape}")
        check_same_float_dtype("conv2d", input=x, weight=weight, **({} if bias is None else {"bias": bias}))

    def forward(self, x, weight, bias=None):
        self.check_inputs(x, weight, bias)
        out_channels, group_channels, kernel_h, kernel_w = weight.shape
        kernel_size = (kernel_h, kernel_w)
        if self.padding == "same":  # now that the kernel size is known
            self.padding = same_padding(kernel_size, self.dilation)
        xp = get_array_module(x)
        plain = self.groups == 1 and self.dilation == (1, 1)
        self.tile = winograd_tile(x, weight, self.stride) if plain and self.fast_routes else None
        # Few input channels (a first layer: C kH kW of at most 32), on the CPU: one product per
        # image, whose (O, Ho Wo) result is already that image's NCHW output. The cheap products
        # of such a layer cost less than moving its big output, and this way nothing is transposed.
        self.per_image = (self.fast_routes and not self.tile and self.groups == 1 and not is_cupy_array(x)
                            and group_channels * kernel_h * kernel_w <= 32)
        self.x_shape = x.shape
        if self.tile:
            out, transformed = winograd.forward(x, weight, self.padding, self.tile, bias)
            self.save_for_backward(weight, transformed)
            return out
        if self.per_image:
            return self.forward_by_image(x, weight, bias)
        cols = im2col(x, kernel_size, self.stride, self.padding, self.dilation)
        n, out_h, out_w = x.shape[0], cols.shape[-2], cols.shape[-1]
        # cols_g: the rows (c, i, j) of each group's channels, (g, C/g kH kW, N Ho Wo)
        cols = cols.reshape(self.groups, group_channels * kernel_h * kernel_w, n * out_h * out_w)
        self.save_for_backward(cols, weight)
        weight_matrix = weight.reshape(self.groups, out_channels // self.groups, -1)  # W2_g
        out = (weight_matrix @ cols).reshape(out_channels, n * out_h * out_w)  # W2_g cols_g, groups stacked
        if bias is not None:
            out += bias[:, None]
        return xp.ascontiguousarray(out.reshape(out_channels, n, out_h, out_w).transpose(1, 0, 2, 3))

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

    def backward(self, grad):
        """The textbook rule: each gradient of a convolution is itself a convolution (flip and dilate).

        With P = pad(x), stride s, dilation d and g = dL/dout,
        out[n, o, y, x] = b[o] + sum_{c,i,j} W[o, c, i, j] P[n, c, s y + d i, s x + d j], so

        dL/dP[n, c, u, v] = sum over (o, y, i) with s y + d i = u (and likewise
        for v) of g[n, o, y, x] W[o, c, i, j]. Spread g to the stride of its
        windows (g' = g at s y, zeros between) and pad it by the window's span
        minus one, d (k - 1); then u = s y + d i says that dL/dP is g'
        correlated with W flipped (i -> k - 1 - i), at dilation d, with in and
        out channels swapped (W^T[c, o] = W[o, c], group by group). Cropping
        the padding off gives dL/dx.

        dL/dW[o, c, i, j] = sum_{n,y,x} g[n, o, y, x] P[n, c, d i + s y, d j + s x]:
        a convolution of P, batch and channel axes swapped, with g as the
        kernel (batch and channel swapped too), at stride d and dilation s;
        the groups ride along as blocks of the new channel axis. Windows that
        did not fit past the last output leave extra rows, cropped to (kH, kW).

        dL/db[o] = sum_{n,y,x} g[n, o, y, x]: b is added at every position of every image.

        The convolutions here are Conv2d nodes (on the plain im2col route), so
        this gradient can be differentiated again by this same rule.
        """
        x, weight = self.inputs[:2]
        n, channels, height, width = self.x_shape
        out_channels, group_channels, kernel_h, kernel_w = weight.shape
        groups = self.groups
        (top, bottom), (left, right) = self.padding
        padded_size = (height + top + bottom, width + left + right)
        span_h, span_w = window_span((kernel_h, kernel_w), self.dilation)
        grad_x = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            spread = Dilate2d.apply(grad, stride=self.stride, offset=(span_h - 1, span_w - 1),
                                    size=(padded_size[0] + span_h - 1, padded_size[1] + span_w - 1))
            flipped = (weight.reshape(groups, out_channels // groups, group_channels, kernel_h, kernel_w)
                       .transpose(0, 2, 1, 3, 4).reshape(channels, out_channels // groups, kernel_h, kernel_w)
                       [:, :, ::-1, ::-1])  # W^T per group, flipped in both spatial axes
            grad_padded = Conv2d.apply(spread, flipped, dilation=self.dilation, groups=groups, fast_routes=False)
            grad_x = grad_padded[:, :, top:top + height, left:left + width]
        if self.needs_input_grad[1]:
            padded = x if padded_size == (height, width) else \
                Dilate2d.apply(x, stride=(1, 1), offset=(top, left), size=padded_size)
            # (C/g, g N, Hp, Wp): the channels of one group as the batch, that group's images as channels
            images = (padded.reshape(n, groups, group_channels, *padded_size).transpose(2, 1, 0, 3, 4)
                      .reshape(group_channels, groups * n, *padded_size))
            taps = Conv2d.apply(images, grad.transpose(1, 0, 2, 3), stride=self.dilation, dilation=self.stride,
                                groups=groups, fast_routes=False)  # (C/g, O, >= kH, >= kW)
            grad_weight = taps[:, :, :kernel_h, :kernel_w].transpose(1, 0, 2, 3)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_x, grad_weight, grad_bias

    def backward_arrays(self, grad):
        n, out_channels, out_h, out_w = grad.shape
        wants_bias = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        if self.per_image:
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


class Dilate2d(Function):
    """x's last two axes spread ``stride`` apart in zeros of ``size``, the first entry at ``offset``.

    out[..., top + sh y, left + sw x] = x[..., y, x], 0 everywhere else:
    dilation and zero padding in one node (stride 1 is plain padding). The
    convolution's textbook rule uses it to put the output gradient back at
    the stride of its windows and to pad the input.
    """

    def __init__(self, stride, offset, size):
        self.stride, self.offset, self.size = tuple(stride), tuple(offset), tuple(size)

    def places(self, shape):
        """The strided slice of the output that holds x (of ``shape``)."""
        (top, left), (stride_h, stride_w), (h, w) = self.offset, self.stride, shape[-2:]
        return (..., slice(top, top + stride_h * (h - 1) + 1, stride_h),
                slice(left, left + stride_w * (w - 1) + 1, stride_w))

    def forward(self, x):
        self.in_shape = x.shape
        out = get_array_module(x).zeros(x.shape[:-2] + self.size, dtype=x.dtype)
        out[self.places(x.shape)] = x
        return out

    def backward(self, grad):
        # linear, d out[top + sh y, left + sw x] / d x[y, x] = 1: read those places back (a strided slice)
        return grad[self.places(self.in_shape)]
