"""2-D convolution, the textbook rule: one matrix product forward (im2col), flip and dilate backward.

A convolution layer (a cross-correlation, as in every framework) computes,
for input x padded to ``padded``, stride (sh, sw) and dilation (dh, dw),

    out[n, o, y, x] = b[o] + sum_{c,i,j} W[o, c, i, j] padded[n, c, sh y + dh i, sw x + dw j].

Forward: ``im2col`` copies every kernel window into a column,
cols[(c, i, j), (n, y, x)] = padded[n, c, sh y + dh i, sw x + dw j], so that
out = W2 cols with W2 = W.reshape(O, C kH kW): one matrix product for the
whole batch, whose (O, N, Ho, Wo) result is transposed to NCHW. Dilation
only spreads a window's taps dh and dw pixels apart: it changes which
pixel each copy reads, nothing else.

Groups: with ``groups`` g the channels fall into g consecutive runs, and
output channel o sees only the C / g input channels of its own run
(o // (O / g)), through W[o] of shape (C / g, kH, kW). The rows (c, i, j) of
one run of channels are consecutive in cols, so the layer is g products
side by side, one batched product: out_g = W2_g cols_g with W2 =
W.reshape(g, O / g, C / g kH kW) and cols (g, C / g kH kW, N Ho Wo). A
depthwise convolution (g = C) is the case of one channel per group.

Backward (``Conv2d.backward``, needle's flip and dilate): both gradients
of a convolution are convolutions themselves, so the rule is written as
Conv2d nodes (with ``Dilate2d`` spreading the output gradient back to the
stride of its windows) and can be differentiated again by this same rule.
The derivation is in ``Conv2d.backward``.

``minigrad/fast/conv.py`` holds the fast version: Winograd's algorithm,
products image by image, threaded copies, CuPy kernels, and the first-order
rule of the product itself (col2im).
"""
import numbers

from ..errors import ShapeError
from ..autograd import Function
from ..backend import get_array_module
from .common import (Dilate2d, as_pair, check_same_float_dtype, check_windows, output_size, pad2d,
                     window_slices, window_span)


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


def same_padding(kernel_size, dilation=(1, 1)):
    """Padding that keeps H and W at stride 1: d (k - 1) in total, the extra one (odd total) at the bottom/right.

    PyTorch's rule for ``padding="same"``.
    """
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel_size, dilation))


def im2col(x, kernel_size, stride, padding, dilation=(1, 1)):
    """Every kernel window of x (N, C, H, W), as an array of shape (C, kH, kW, N, Ho, Wo).

    ``padding`` is ((top, bottom), (left, right)). One strided slice copy per
    kernel offset (i, j), kH kW in all, rather than one per window: the slice
    holds the pixel at offset (i, j) of every window at once. The result is
    contiguous, so reshaping it to (C kH kW, N Ho Wo) costs nothing.
    """
    xp = get_array_module(x)
    n, channels = x.shape[:2]
    out_size = output_size(x.shape[2:], kernel_size, stride, padding, dilation)
    padded = pad2d(x.transpose(1, 0, 2, 3), padding)  # (C, N, H, W): the batch inside each channel's rows
    cols = xp.empty((channels, *kernel_size, n, *out_size), dtype=x.dtype)
    for (i, j), window in window_slices(kernel_size, stride, out_size, dilation):
        cols[:, i, j] = padded[window]
    return cols


class Conv2d(Function):
    """2-D convolution of NCHW input with weight (out_channels, in_channels / groups, kH, kW).

    ``padding`` is an int, a pair (rows, columns), ``"same"`` (stride 1 only;
    d (k - 1) in total, the odd one at the bottom/right, as PyTorch) or
    ``"valid"`` (no padding). ``dilation`` puts the kernel's taps d pixels
    apart; ``groups`` splits the channels into that many independent
    convolutions (see the module docstring).
    """

    def __init__(self, stride=1, padding=0, dilation=1, groups=1):
        self.stride, self.padding, self.dilation, self.groups = conv_options(
            "conv2d", stride, padding, dilation, groups)

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

    def prepare(self, x, weight, bias):
        """Check the inputs, settle ``"same"`` padding now that the kernel is known, and note x's shape.

        Every forward (this one and the fast one) starts here: ``backward``
        reads the padding as numbers and x's shape.
        """
        self.check_inputs(x, weight, bias)
        if self.padding == "same":
            self.padding = same_padding(weight.shape[2:], self.dilation)
        self.x_shape = x.shape

    def forward(self, x, weight, bias=None):
        self.prepare(x, weight, bias)
        self.save_for_backward(x, weight)  # backward reads them as the inputs; saved so changes are caught
        cols = im2col(x, weight.shape[2:], self.stride, self.padding, self.dilation)
        return self.product(cols, weight, bias)

    def product(self, cols, weight, bias):
        """out = W2_g cols_g + b for every group at once, from im2col's (C, kH, kW, N, Ho, Wo), as NCHW."""
        xp = get_array_module(cols)
        out_channels, group_channels, kernel_h, kernel_w = weight.shape
        n, out_h, out_w = cols.shape[3:]
        # cols_g, the rows (c, i, j) of each group's channels: (g, C/g kH kW, N Ho Wo)
        cols = cols.reshape(self.groups, group_channels * kernel_h * kernel_w, n * out_h * out_w)
        weight_matrix = weight.reshape(self.groups, out_channels // self.groups, -1)  # W2_g
        out = (weight_matrix @ cols).reshape(out_channels, n * out_h * out_w)  # groups stacked
        if bias is not None:
            out += bias[:, None]
        return xp.ascontiguousarray(out.reshape(out_channels, n, out_h, out_w).transpose(1, 0, 2, 3))

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

        The convolutions here are Conv2d nodes, so this gradient can be
        differentiated again by this same rule.
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
            grad_padded = Conv2d.apply(spread, flipped, dilation=self.dilation, groups=groups)
            grad_x = grad_padded[:, :, top:top + height, left:left + width]
        if self.needs_input_grad[1]:
            padded = x if padded_size == (height, width) else \
                Dilate2d.apply(x, stride=(1, 1), offset=(top, left), size=padded_size)
            # (C/g, g N, Hp, Wp): the channels of one group as the batch, that group's images as channels
            images = (padded.reshape(n, groups, group_channels, *padded_size).transpose(2, 1, 0, 3, 4)
                      .reshape(group_channels, groups * n, *padded_size))
            taps = Conv2d.apply(images, grad.transpose(1, 0, 2, 3), stride=self.dilation, dilation=self.stride,
                                groups=groups)  # (C/g, O, >= kH, >= kW)
            grad_weight = taps[:, :, :kernel_h, :kernel_w].transpose(1, 0, 2, 3)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_x, grad_weight, grad_bias
