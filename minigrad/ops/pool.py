"""Pooling: the maximum or the mean of each window, and the global average.

Pooling slides the same windows over the input as a convolution does, so it
reuses conv.py's helpers: ``im2col`` gathers the windows as an array of shape
(N, C, kH, kW, Ho, Wo), forward reduces each window to one number, and
backward writes the gradient of every window entry and lets ``col2im`` add
it back onto the pixels (a pixel in two overlapping windows gets both terms).
"""
from ..autograd import Function
from ..backend import get_array_module, is_floating
from .conv import as_pair, check_windows, col2im, im2col


class _Pool2d(Function):
    """Arguments and checks shared by max and average pooling.

    ``stride`` defaults to ``kernel_size`` (non-overlapping windows), as in
    PyTorch and Keras. ``padding`` (an int or a pair) may be at most half the
    kernel, PyTorch's rule, so that no window is all padding.
    """

    op = None

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = as_pair(kernel_size, "kernel_size", self.op)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", self.op)
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"{self.op}: kernel_size and stride must be at least 1, "
                             f"got kernel_size {kernel_size!r}, stride {stride!r}")
        rows, columns = as_pair(padding, "padding", self.op)
        if min(rows, columns) < 0 or 2 * rows > self.kernel_size[0] or 2 * columns > self.kernel_size[1]:
            raise ValueError(f"{self.op}: padding {padding!r} must be between 0 and half the "
                             f"kernel size {self.kernel_size}")
        self.padding = ((rows, rows), (columns, columns))

    def windows(self, x, pad_value):
        """Check x and gather its windows, (N, C, kH, kW, Ho, Wo)."""
        check_windows(self.op, x, self.kernel_size, self.padding)
        if not is_floating(x.dtype):
            raise TypeError(f"{self.op}: expected a floating-point input, got {x.dtype} (input {x.shape})")
        self.x_shape = x.shape
        return im2col(x, self.kernel_size, self.stride, self.padding, pad_value)


class MaxPool2d(_Pool2d):
    """The largest value of each window; padding is -inf, so it is never the maximum.

    A window may hold its maximum twice (zeros after a ReLU): the first in
    row-major order gets the gradient, as in PyTorch (windows of -inf or NaN inputs
    excepted: PyTorch skips the padding and takes the last NaN). Keras: ``MaxPooling2D(pool_size, strides)``.
    """

    op = "max_pool2d"

    def forward(self, x):
        xp = get_array_module(x)
        cols = self.windows(x, pad_value=-xp.inf)
        n, c, kernel_h, kernel_w, out_h, out_w = cols.shape
        cols = cols.reshape(n, c, kernel_h * kernel_w, out_h, out_w)
        # argmax picks the first maximum; a window of up to 256 entries indexes in a uint8
        argmax = cols.argmax(axis=2).astype(xp.min_scalar_type(kernel_h * kernel_w - 1))
        self.save_for_backward(argmax)
        return cols.max(axis=2)

    def backward(self, grad):
        # d max/d x_k = 1 for the window's chosen maximum k, 0 for its other entries
        argmax, = self.saved
        xp = get_array_module(grad)
        kernel_h, kernel_w = self.kernel_size
        offsets = xp.arange(kernel_h * kernel_w).reshape(kernel_h, kernel_w, 1, 1)
        grad_cols = (argmax[:, :, None, None] == offsets) * grad[:, :, None, None]
        return col2im(grad_cols, self.x_shape, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """The mean of each window, zero padding included in the divisor (PyTorch's ``count_include_pad=True``).

    Keras: ``AveragePooling2D(pool_size, strides)``; its ``padding="same"``
    leaves the padding out of the divisor instead.
    """

    op = "avg_pool2d"

    def forward(self, x):
        return self.windows(x, pad_value=0).mean(axis=(2, 3))

    def backward(self, grad):
        # mean = sum / (kH kW): each entry of the window gets grad / (kH kW)
        xp = get_array_module(grad)
        kernel_h, kernel_w = self.kernel_size
        n, c, out_h, out_w = grad.shape
        grad_cols = xp.broadcast_to((grad / (kernel_h * kernel_w))[:, :, None, None],
                                    (n, c, kernel_h, kernel_w, out_h, out_w))
        return col2im(grad_cols, self.x_shape, self.stride, self.padding)


class AdaptiveAvgPool2d(Function):
    """Global average pooling, (N, C, H, W) -> (N, C, 1, 1): the mean of each channel.

    Only ``output_size`` 1 is supported, the size ResNet-style heads use.
    Keras: ``GlobalAveragePooling2D(keepdims=True)``.
    """

    def __init__(self, output_size):
        if output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(f"adaptive_avg_pool2d: only output_size 1 (a global average) is supported, "
                             f"got {output_size!r}")

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"adaptive_avg_pool2d: expected input of shape (N, C, H, W), got {x.shape}")
        if not is_floating(x.dtype):
            raise TypeError(f"adaptive_avg_pool2d: expected a floating-point input, got {x.dtype} (input {x.shape})")
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, grad):
        # mean over H W: each pixel gets grad / (H W)
        xp = get_array_module(grad)
        height, width = self.x_shape[2:]
        return xp.broadcast_to(grad / (height * width), self.x_shape)
