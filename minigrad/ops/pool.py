"""Pooling, the textbook rules: the maximum or the mean of each window, and the global average.

Pooling slides windows over the input as a convolution does, but each
window reduces on its own, so no matrix is needed: for every offset (i, j)
inside the window, one strided slice of the (padded) input holds entry
(i, j) of all windows at once (``window_slices`` in common.py). Forward
folds those kH kW slices together, elementwise. Backward (``spread_back``)
puts each offset's share of the gradient back at the pixels it came from,
with ``Dilate2d``, so that a pixel in two overlapping windows receives both
terms; written with Tensor ops, a pooling gradient can be differentiated again.

``minigrad/fast/pool.py`` holds the fast version: routes for windows side
by side, the passes shared out among threads, and first-order array rules.
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import get_array_module, is_floating
from .common import Dilate2d, as_pair, broadcast_to, check_windows, keep, output_size, pad2d, window_slices


class _Pool2d(Function):
    """Arguments and checks shared by max and average pooling.

    ``stride`` defaults to ``kernel_size`` (non-overlapping windows), as in
    PyTorch. ``padding`` (an int or a pair) may be at most half the
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
        """Check x and pad it: (padded x, the slices that hold each window offset, row-major)."""
        check_windows(self.op, x, self.kernel_size, self.padding)
        if not is_floating(x.dtype):
            raise TypeError(f"{self.op}: expected a floating-point input, got {x.dtype} (input {x.shape})")
        self.x_shape = x.shape
        out_size = output_size(x.shape[2:], self.kernel_size, self.stride, self.padding)
        return pad2d(x, self.padding, pad_value), self.slices(out_size)

    def slices(self, out_size):
        return [window for _, window in window_slices(self.kernel_size, self.stride, out_size)]

    def spread_back(self, shares):
        """The textbook scatter: each window offset's share (Tensors, row-major) put back at its pixels and summed.

        Entry (i, j) of the window at (y, x) is pixel (sh y + i, sw x + j) of the
        padded input, so offset (i, j)'s shares, spread ``stride`` apart from
        (i, j) (``Dilate2d``), land on their pixels; a pixel in several windows
        sums their terms. The padding, which is no input, is cropped off.
        """
        (top, bottom), (left, right) = self.padding
        height, width = self.x_shape[2:]
        padded_size = (height + top + bottom, width + left + right)
        offsets = [(i, j) for i in range(self.kernel_size[0]) for j in range(self.kernel_size[1])]
        total = None
        for offset, share in zip(offsets, shares):
            placed = Dilate2d.apply(share, stride=self.stride, offset=offset, size=padded_size)
            total = placed if total is None else total + placed
        return total[:, :, top:top + height, left:left + width]


class MaxPool2d(_Pool2d):
    """The largest value of each window; padding is -inf, so it is never the maximum.

    A window may hold its maximum twice (zeros after a ReLU): the first in
    row-major order gets the gradient, as in PyTorch; a window holding NaN
    outputs NaN and gives its gradient to its last NaN, as PyTorch does
    (windows of only -inf beside padding excepted: PyTorch skips the padding).
    """

    op = "max_pool2d"

    def forward(self, x):
        xp = get_array_module(x)
        padded, slices = self.windows(x, pad_value=-xp.inf)
        out = padded[slices[0]].copy()
        for window in slices[1:]:
            out = xp.maximum(out, padded[window])  # a NaN in the window passes through to its maximum
        self.save_for_backward(*self.find_winners(padded, slices, out))
        return out

    def find_winners(self, padded, slices, out):
        """For each window offset (row-major), a mask of out's shape: True where that offset is its window's winner.

        The first offset equal to the maximum wins a tie, as in PyTorch. NaN
        equals nothing, so a window whose maximum is NaN has no winner after
        the first pass; the second gives it its last NaN, as PyTorch does
        (and changes nothing where there is no NaN).
        """
        xp = get_array_module(out)
        winners, taken = [], xp.zeros(out.shape, dtype=bool)
        for window in slices:
            hit = (padded[window] == out) & ~taken
            taken = taken | hit
            winners.append(hit)
        later_nan = xp.zeros(out.shape, dtype=bool)
        for k in reversed(range(len(slices))):
            nan = xp.isnan(padded[slices[k]]) & ~later_nan
            winners[k] = winners[k] | nan
            later_nan = later_nan | nan
        return winners

    def backward(self, grad):
        """The textbook rule: d max/d x_k = 1 for the window's chosen maximum k, 0 for its other entries.

        So each window's gradient goes to its winner: for each window offset,
        the output gradient kept where that offset won (a constant mask from
        forward), scattered back to the pixels (``spread_back``). The rule is
        linear in grad with constant masks, so its own gradient with respect
        to grad gathers by the same masks, and with respect to x it is zero
        (almost everywhere: the winners do not move under a small change of x).
        """
        return self.spread_back([keep(grad, mask) for mask in self.winner_masks()])

    def winner_masks(self):
        """Forward's record of each window's winner: one boolean mask of the output's shape per offset, row-major.

        The fast drop-in, which keeps other records, gives the same masks from them.
        """
        return list(self.saved)


class AvgPool2d(_Pool2d):
    """The mean of each window, zero padding included in the divisor (PyTorch's ``count_include_pad=True``)."""

    op = "avg_pool2d"

    def forward(self, x):
        padded, slices = self.windows(x, pad_value=0)
        out = padded[slices[0]].copy()
        for window in slices[1:]:
            out += padded[window]
        return out / len(slices)

    def backward(self, grad):
        """The textbook rule: mean = sum / (kH kW), so each entry of a window gets grad / (kH kW).

        Every window offset's share is the same, scattered back to its pixels
        (``spread_back``): a linear map of grad, whose own gradient gathers
        the windows' entries again and divides by kH kW.
        """
        share = grad / (self.kernel_size[0] * self.kernel_size[1])
        return self.spread_back([share] * (self.kernel_size[0] * self.kernel_size[1]))


class AdaptiveAvgPool2d(Function):
    """Global average pooling, (N, C, H, W) -> (N, C, 1, 1): the mean of each channel.

    Only ``output_size`` 1 is supported, the size ResNet-style heads use.
    """

    def __init__(self, output_size):
        if output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(f"adaptive_avg_pool2d: only output_size 1 (a global average) is supported, "
                             f"got {output_size!r}")

    def forward(self, x):
        if x.ndim != 4:
            raise ShapeError(f"adaptive_avg_pool2d: expected input of shape (N, C, H, W), got {x.shape}")
        if not is_floating(x.dtype):
            raise TypeError(f"adaptive_avg_pool2d: expected a floating-point input, got {x.dtype} (input {x.shape})")
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, grad):
        """The textbook rule: mean over H W, so each pixel gets grad / (H W), broadcast over the image."""
        height, width = self.x_shape[2:]
        return broadcast_to(grad / (height * width), self.x_shape)
