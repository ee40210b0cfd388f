"""Fast pooling: routes for windows side by side, passes shared out among threads, first-order array rules.

The textbook rules (``ops/pool.py``) fold the kH kW window slices together
and spread each offset's share of the gradient back with graph nodes. These
drop-ins compute the same numbers: max pooling takes a maximum of maxima
for 2x2 windows side by side (``forward_pairs``), one argmax per row of a
reshaped copy for larger windows side by side (``forward_tiles``), and the
slices otherwise, with the images shared out among threads; their array
rules (``backward_arrays``) add each share back in place (``scatter``).

First order only: ``create_graph`` (or ``mg.config.fast = False`` after
the forward) runs the inherited textbook backward, which asks
``winner_masks`` for forward's winners, whichever route found them.
"""
from ..backend import get_array_module, is_cupy_array
from ..ops import pool as textbook
from ..ops.common import pad2d
from .cpu import run_on_slices
from .elementwise import zero_where


def scatter(node, grad, share):
    """Add each window offset's share of the gradient back onto the input's pixels, for pooling ``node``.

    ``share(k, part)`` is the share of window offset k (row-major) for the
    images ``part`` (a slice of the batch). The images are shared out among
    threads, each writing only its own; the padding is cropped off at the end.
    """
    (top, bottom), (left, right) = node.padding
    n, c, h, w = node.x_shape
    # Windows that do not overlap (stride >= kernel) touch each pixel at
    # most once, so writing is enough; reading the zeros back to add costs a pass.
    overlapping = node.stride[0] < node.kernel_size[0] or node.stride[1] < node.kernel_size[1]
    padded = get_array_module(grad).zeros((n, c, h + top + bottom, w + left + right), dtype=grad.dtype)
    slices = node.slices(grad.shape[2:])

    def add(part):  # a run of consecutive images
        image = padded[part]
        for k, window in enumerate(slices):
            if overlapping:
                image[window] += share(k, part)
            else:
                image[window] = share(k, part)
    run_on_slices(add, n, grad)
    return padded[:, :, top:top + h, left:left + w]


class MaxPool2d(textbook.MaxPool2d):
    """Fast MaxPool2d: pairs for 2x2 windows side by side, tiles for larger ones, threaded slices otherwise."""

    def forward(self, x):
        xp = get_array_module(x)
        padded, slices = self.windows(x, pad_value=-xp.inf)
        side_by_side = self.stride == self.kernel_size and self.padding == ((0, 0), (0, 0))
        if side_by_side and len(slices) > 4:
            self.route = "tiles"
            return self.forward_tiles(x)
        if side_by_side and self.kernel_size == (2, 2):
            self.route = "pairs"
            return self.forward_pairs(x)
        self.route = "slices"
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

    def forward_tiles(self, x):
        """Large windows side by side (the 16x16 pooling of seed 001): one window per row of a reshaped copy.

        With kH kW slices, each a stride-kH, stride-kW pass over the whole
        input, a 16x16 pool would read the input 256 times, a cache line at a
        time; one copy that puts each window's values in a row, then an argmax
        along the rows, reads it once or twice. The argmax is the first
        maximum in row-major order, the one PyTorch picks. It is also a
        window's first NaN, where PyTorch picks the last: windows whose
        maximum is NaN take the last NaN of their row instead.
        """
        xp = get_array_module(x)
        (kernel_h, kernel_w), (n, c, h, w) = self.kernel_size, x.shape
        out_h, out_w = h // kernel_h, w // kernel_w
        rows = (x[:, :, :out_h * kernel_h, :out_w * kernel_w]
                .reshape(n, c, out_h, kernel_h, out_w, kernel_w).transpose(0, 1, 2, 4, 3, 5)
                .reshape(n, c, out_h, out_w, kernel_h * kernel_w))
        index = rows.argmax(axis=-1)
        out = xp.take_along_axis(rows, index[..., None], axis=-1)[..., 0]
        if is_cupy_array(x) or xp.isnan(out).any():  # rare; on a GPU without asking, as in forward
            last_nan = rows.shape[-1] - 1 - xp.isnan(rows[..., ::-1]).argmax(axis=-1)
            index = xp.where(xp.isnan(out), last_nan, index)
        self.save_for_backward(index[..., None])
        return out

    def winner_masks(self):
        """The textbook rule's masks (one per window offset, row-major) from whichever record the route kept."""
        if self.route == "tiles":  # the chosen offset k = i kW + j of each window
            index = self.saved[0][..., 0]
            return [index == k for k in range(self.kernel_size[0] * self.kernel_size[1])]
        if self.route == "pairs":  # the row (down), then within that row the column (right)
            down, right = self.saved
            right_top, right_bottom = right[:, :, 0::2], right[:, :, 1::2]
            return [~down & ~right_top, ~down & right_top, down & ~right_bottom, down & right_bottom]
        return super().winner_masks()

    def backward_arrays(self, grad):
        # d max/d x_k = 1 for the window's chosen maximum k, 0 for its other entries
        if self.route == "tiles":
            return self.backward_tiles(grad)
        if self.route == "pairs":
            return self.backward_pairs(grad)
        if needs_selection(grad):
            return scatter(self, grad, lambda k, part: kept(grad[part], self.saved[k][part]))
        return scatter(self, grad, lambda k, part: grad[part] * self.saved[k][part])

    def backward_pairs(self, grad):
        """Each window's gradient to its row (``down``), then, in that row, to its column (``right``)."""
        xp = get_array_module(grad)
        down, right = self.saved
        n, channels, out_h, out_w = grad.shape
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)  # pixels past the last whole window get none

        if needs_selection(grad):  # the masks as selections: a NaN upstream reaches its winner alone
            def take(values, mask, out):
                zero_where(~mask, values, out=out)
        else:  # all finite: multiplying by the masks gives the same, in one pass instead of two
            take = xp.multiply

        def add(part):  # a run of consecutive images
            by_rows = xp.empty((grad[part].shape[0], channels, 2 * out_h, out_w), dtype=grad.dtype)
            take(grad[part], ~down[part], out=by_rows[:, :, 0::2])
            take(grad[part], down[part], out=by_rows[:, :, 1::2])
            take(by_rows, ~right[part], out=grad_x[part, :, :2 * out_h, 0:2 * out_w:2])
            take(by_rows, right[part], out=grad_x[part, :, :2 * out_h, 1:2 * out_w:2])
        run_on_slices(add, n, grad_x)
        return grad_x

    def backward_tiles(self, grad):
        """Each window's gradient to its argmax: row i, column j of its tile, written by one fancy index."""
        xp = get_array_module(grad)
        index, = self.saved
        (kernel_h, kernel_w), (n, c, out_h, out_w) = self.kernel_size, grad.shape
        i, j = xp.divmod(index[..., 0], kernel_w)
        tiles = xp.zeros((n, c, out_h, kernel_h, out_w, kernel_w), dtype=grad.dtype)
        tiles[xp.arange(n).reshape(-1, 1, 1, 1), xp.arange(c).reshape(1, -1, 1, 1),
              xp.arange(out_h).reshape(1, 1, -1, 1), i, xp.arange(out_w).reshape(1, 1, 1, -1), j] = grad
        grad_x = tiles.reshape(n, c, out_h * kernel_h, out_w * kernel_w)
        # pixels past the last whole window (cropped in forward) get no gradient
        (_, _, h, w) = self.x_shape
        return pad2d(grad_x, ((0, h - out_h * kernel_h), (0, w - out_w * kernel_w)))


def needs_selection(grad):
    """Whether the winner masks must select rather than multiply: when a NaN or inf comes from upstream.

    NaN times a mask's 0 is NaN, which would reach the window's other pixels.
    On the CPU a look at the (output-sized) gradient says whether that can
    happen; on a GPU the look would make the host wait, so there it always selects.
    """
    return is_cupy_array(grad) or not get_array_module(grad).isfinite(grad).all()


def kept(values, mask):
    """``values`` where ``mask`` holds, +0 elsewhere, selected (a NaN where the mask is False stays out)."""
    out = get_array_module(values).empty_like(values)
    zero_where(~mask, values, out=out)
    return out


class AvgPool2d(textbook.AvgPool2d):
    """Fast AvgPool2d: the textbook forward, and its rule adding the shares back in place on threads."""

    def backward_arrays(self, grad):
        # mean = sum / (kH kW): each entry of the window gets grad / (kH kW)
        share = grad / (self.kernel_size[0] * self.kernel_size[1])
        return scatter(self, grad, lambda k, part: share[part])


class AdaptiveAvgPool2d(textbook.AdaptiveAvgPool2d):
    """Fast AdaptiveAvgPool2d: the textbook forward, its rule a broadcast view instead of a graph node."""

    def backward_arrays(self, grad):
        # mean over H W: each pixel gets grad / (H W)
        xp = get_array_module(grad)
        height, width = self.x_shape[2:]
        return xp.broadcast_to(grad / (height * width), self.x_shape)


DROP_INS = {textbook.MaxPool2d: MaxPool2d, textbook.AvgPool2d: AvgPool2d,
            textbook.AdaptiveAvgPool2d: AdaptiveAvgPool2d}
