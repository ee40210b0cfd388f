"""Pooling: the maximum or the mean of each window, and the global average.

Pooling slides windows over the input as a convolution does, but each
window reduces on its own, so no matrix is needed: for every offset (i, j)
inside the window, one strided slice of the (padded) input holds entry
(i, j) of all windows at once (conv.py's ``window_slices``). Forward folds
those kH kW slices together, elementwise; backward adds each slice's share
of the gradient back through the same slices, so a pixel in two overlapping
windows receives both terms. The textbook rules (``backward``) do the same with
Tensor ops, each offset's share spread back by conv.py's ``Dilate2d``, so
that a pooling gradient can be differentiated again.
"""
from ..errors import ShapeError
from ..autograd import Function
from ..backend import get_array_module, is_cupy_array, is_floating, run_on_slices
from .common import broadcast_to, keep
from .conv import Dilate2d, as_pair, check_windows, output_size, pad2d, window_slices


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

    def scatter(self, grad, share):
        """Add each window offset's share of the gradient back onto the input's pixels.

        ``share(k, part)`` is the share of window offset k (row-major) for the
        images ``part`` (a slice of the batch). The images are shared out among
        threads, each writing only its own; the padding is cropped off at the end.
        """
        (top, bottom), (left, right) = self.padding
        n, c, h, w = self.x_shape
        # Windows that do not overlap (stride >= kernel) touch each pixel at
        # most once, so writing is enough; reading the zeros back to add costs a pass.
        overlapping = self.stride[0] < self.kernel_size[0] or self.stride[1] < self.kernel_size[1]
        padded = get_array_module(grad).zeros((n, c, h + top + bottom, w + left + right), dtype=grad.dtype)
        slices = self.slices(grad.shape[2:])

        def add(part):  # a run of consecutive images
            image = padded[part]
            for k, window in enumerate(slices):
                if overlapping:
                    image[window] += share(k, part)
                else:
                    image[window] = share(k, part)
        run_on_slices(add, n, grad)
        return padded[:, :, top:top + h, left:left + w]


class MaxPool2d(_Pool2d):
    """The largest value of each window; padding is -inf, so it is never the maximum.

    A window may hold its maximum twice (zeros after a ReLU): the first in
    row-major order gets the gradient, as in PyTorch; a window holding NaN
    outputs NaN and gives its gradient to its last NaN, as PyTorch does
    (windows of only -inf beside padding excepted: PyTorch skips the padding).
    Keras: ``MaxPooling2D(pool_size, strides)``.
    """

    op = "max_pool2d"

    def forward(self, x):
        xp = get_array_module(x)
        padded, slices = self.windows(x, pad_value=-xp.inf)
        side_by_side = self.stride == self.kernel_size and self.padding == ((0, 0), (0, 0))
        self.tiled = side_by_side and len(slices) > 4
        if self.tiled:
            return self.forward_tiles(x)
        self.pairs = side_by_side and self.kernel_size == (2, 2)
        if self.pairs:
            return self.forward_pairs(x)
        out = xp.empty(padded[slices[0]].shape, dtype=x.dtype)
        winners = [xp.empty(out.shape, dtype=bool) for _ in slices]
        # On a GPU, asking whether there is a NaN would make the host wait for the device;
        # the NaN fix-up changes nothing where there is none, so it always runs there.
        on_gpu = is_cupy_array(x)

        def pool(part):  # a run of consecutive images, written into its own part of out and winners
            image, image_out = padded[part], out[part]
            image_out[...] = image[slices[0]]
            for window in slices[1:]:
                xp.maximum(image_out, image[window], out=image_out)
            # For backward, mark in each offset's slice the entries that are their
            # window's maximum, each window once: the first hit (row-major) wins ties.
            taken = xp.zeros(image_out.shape, dtype=bool)
            for window, hit in zip(slices, winners):
                hit = hit[part]
                xp.equal(image[window], image_out, out=hit)
                hit &= ~taken
                taken |= hit
            if on_gpu or xp.isnan(image_out).any():  # rare: PyTorch gives a window's gradient to its last NaN
                later_nan = xp.zeros(image_out.shape, dtype=bool)
                for window, hit in zip(slices[::-1], winners[::-1]):
                    nan = xp.isnan(image[window]) & ~later_nan
                    hit[part] |= nan
                    later_nan |= nan
        # NumPy runs each of these passes on one core; the images are shared out among threads.
        run_on_slices(pool, x.shape[0], x)
        self.save_for_backward(*winners)
        return out

    def forward_pairs(self, x):
        """2x2 windows side by side, the pooling of every seed network: a maximum of maxima, pairs of columns first.

        First each row's pairs of pixels: h = max(left, right), read as two
        stride-2 slices of every row; then each pair of rows of h: out =
        max(top, bottom), whole rows. Four passes in all. (Reading every other
        pixel of every other row, the obvious four slices of a window, ran 4-6
        times slower on arrays that start on a 64-byte boundary.)

        For backward it keeps ``right`` (right > left, per pair of pixels in
        every row) and ``down`` (the bottom row's maximum > the top row's).
        Both are strict, so a tie goes to the entry that comes first in
        row-major order, as in PyTorch: the top row if it holds the maximum,
        and within a row its left pixel. PyTorch gives a window holding NaN
        to its last NaN: the bottom row if it has one, and within a row the
        right pixel if it is NaN, which is what ``right`` and ``down`` pick
        once NaN counts as larger than everything.
        """
        xp = get_array_module(x)
        n, channels = x.shape[:2]
        out_h, out_w = x.shape[2] // 2, x.shape[3] // 2
        out = xp.empty((n, channels, out_h, out_w), dtype=x.dtype)
        right = xp.empty((n, channels, 2 * out_h, out_w), dtype=bool)
        down = xp.empty(out.shape, dtype=bool)
        on_gpu = is_cupy_array(x)  # the NaN fix-up without asking first, as in forward

        def pool(part):  # a run of consecutive images
            left, right_v = x[part, :, :2 * out_h, 0:2 * out_w:2], x[part, :, :2 * out_h, 1:2 * out_w:2]
            h = xp.maximum(left, right_v)
            xp.greater(right_v, left, out=right[part])
            top, bottom = h[:, :, 0::2], h[:, :, 1::2]
            xp.maximum(top, bottom, out=out[part])
            xp.greater(bottom, top, out=down[part])
            if on_gpu or xp.isnan(out[part]).any():  # rare: maximum passes NaN on, but > is False for it
                right[part] |= xp.isnan(right_v)
                down[part] |= xp.isnan(bottom)
        run_on_slices(pool, n, x)
        self.save_for_backward(down, right)
        return out

    def backward_pairs(self, grad):
        """Each window's gradient to its row (``down``), then, in that row, to its column (``right``)."""
        xp = get_array_module(grad)
        down, right = self.saved
        n, channels, out_h, out_w = grad.shape
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)  # pixels past the last whole window get none

        def add(part):  # a run of consecutive images
            by_rows = xp.empty((grad[part].shape[0], channels, 2 * out_h, out_w), dtype=grad.dtype)
            xp.multiply(grad[part], ~down[part], out=by_rows[:, :, 0::2])
            xp.multiply(grad[part], down[part], out=by_rows[:, :, 1::2])
            xp.multiply(by_rows, ~right[part], out=grad_x[part, :, :2 * out_h, 0:2 * out_w:2])
            xp.multiply(by_rows, right[part], out=grad_x[part, :, :2 * out_h, 1:2 * out_w:2])
        run_on_slices(add, n, grad_x)
        return grad_x

    def forward_tiles(self, x):
        """Large windows side by side (the 16x16 pooling of seed 001): one window per row of a reshaped copy.

        With kH kW slices, each a stride-kH, stride-kW pass over the whole
        input, a 16x16 pool would read the input 256 times, a cache line at a
        time; one copy that puts each window's values in a row, then an argmax
        along the rows, reads it once or twice. The argmax is the first
        maximum in row-major order, the one PyTorch picks.
        """
        xp = get_array_module(x)
        (kernel_h, kernel_w), (n, c, h, w) = self.kernel_size, x.shape
        out_h, out_w = h // kernel_h, w // kernel_w
        rows = (x[:, :, :out_h * kernel_h, :out_w * kernel_w]
                .reshape(n, c, out_h, kernel_h, out_w, kernel_w).transpose(0, 1, 2, 4, 3, 5)
                .reshape(n, c, out_h, out_w, kernel_h * kernel_w))
        index = rows.argmax(axis=-1)[..., None]
        self.save_for_backward(index)
        return xp.take_along_axis(rows, index, axis=-1)[..., 0]

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
        """Forward's record of each window's maximum, whichever route it took, as one boolean mask per offset.

        One mask of the output's shape per window offset (i, j), row-major:
        True where that offset holds the window's chosen maximum.
        """
        if self.tiled:  # the chosen offset k = i kW + j of each window
            index = self.saved[0][..., 0]
            return [index == k for k in range(self.kernel_size[0] * self.kernel_size[1])]
        if self.pairs:  # the row (down), then within that row the column (right)
            down, right = self.saved
            right_top, right_bottom = right[:, :, 0::2], right[:, :, 1::2]
            return [~down & ~right_top, ~down & right_top, down & ~right_bottom, down & right_bottom]
        return list(self.saved)

    def backward_arrays(self, grad):
        # d max/d x_k = 1 for the window's chosen maximum k, 0 for its other entries
        if self.tiled:
            return self.backward_tiles(grad)
        if self.pairs:
            return self.backward_pairs(grad)
        return self.scatter(grad, lambda k, part: grad[part] * self.saved[k][part])

    def backward_tiles(self, grad):
        xp = get_array_module(grad)
        index, = self.saved
        (kernel_h, kernel_w), (n, c, out_h, out_w) = self.kernel_size, grad.shape
        # each window's gradient goes to one pixel: row i, column j of its tile, written by one fancy index
        i, j = xp.divmod(index[..., 0], kernel_w)
        tiles = xp.zeros((n, c, out_h, kernel_h, out_w, kernel_w), dtype=grad.dtype)
        tiles[xp.arange(n).reshape(-1, 1, 1, 1), xp.arange(c).reshape(1, -1, 1, 1),
              xp.arange(out_h).reshape(1, 1, -1, 1), i, xp.arange(out_w).reshape(1, 1, 1, -1), j] = grad
        grad_x = tiles.reshape(n, c, out_h * kernel_h, out_w * kernel_w)
        # pixels past the last whole window (cropped in forward) get no gradient
        (_, _, h, w) = self.x_shape
        return pad2d(grad_x, ((0, h - out_h * kernel_h), (0, w - out_w * kernel_w)))


class AvgPool2d(_Pool2d):
    """The mean of each window, zero padding included in the divisor (PyTorch's ``count_include_pad=True``).

    Keras: ``AveragePooling2D(pool_size, strides)``; its ``padding="same"``
    leaves the padding out of the divisor instead.
    """

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

    def backward_arrays(self, grad):
        # mean = sum / (kH kW): each entry of the window gets grad / (kH kW)
        share = grad / (self.kernel_size[0] * self.kernel_size[1])
        return self.scatter(grad, lambda k, part: share[part])


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
            raise ShapeError(f"adaptive_avg_pool2d: expected input of shape (N, C, H, W), got {x.shape}")
        if not is_floating(x.dtype):
            raise TypeError(f"adaptive_avg_pool2d: expected a floating-point input, got {x.dtype} (input {x.shape})")
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, grad):
        """The textbook rule: mean over H W, so each pixel gets grad / (H W), broadcast over the image."""
        height, width = self.x_shape[2:]
        return broadcast_to(grad / (height * width), self.x_shape)

    def backward_arrays(self, grad):
        # mean over H W: each pixel gets grad / (H W)
        xp = get_array_module(grad)
        height, width = self.x_shape[2:]
        return xp.broadcast_to(grad / (height * width), self.x_shape)
