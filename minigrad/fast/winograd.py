"""Winograd's minimal filtering: a stride-1 convolution with a fraction of the multiplications.

Why: a 5x5 convolution spends 25 multiply-adds per output pixel and channel
pair. Winograd's F(m x m, r x r) computes an m x m tile of outputs from an
n x n tile of inputs (n = m + r - 1) with only n^2 products per channel pair:
F(2x2, 5x5) needs 36 products for 4 outputs instead of 100, F(2x2, 3x3) 16
instead of 36 (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", 2015). What it adds, the transforms below, are cheap linear maps.
Bigger tiles save more (F(4x4, 5x5): 64 for 16 outputs instead of 400) but
round worse in float32, which is why ``fast/conv.py``, which decides when to
use it, takes tiles of 2 (see ``PRECISE_POINTS``).

One dimension first. Correlating r weights g with n inputs d gives m outputs
y_i = sum_j g_j d_(i+j). The product of polynomials s(z) = g(z) h(z), with
h of degree m - 1, is linear in h, s = T_g h with T_g[k, i] = g_(k-i), and
the correlation is its transpose: y = T_g^T d. Toom and Cook compute s by
evaluating g and h at n points (n - 1 numbers a_p and "infinity", which
picks the leading coefficient), multiplying the values, and interpolating:

    s = C [(V_r g) * (V_m h)],   V_k[p] = (1, a_p, ..., a_p^(k-1)),  C = V_n^-1.

So T_g = C diag(V_r g) V_m, and transposing it

    y = V_m^T [(V_r g) * (C^T d)] = A^T [(G g) * (B^T d)]

with A^T = V_m^T (m x n), G = V_r (n x r) and B^T = C^T (n x n): n products.
In two dimensions the same maps act on rows and on columns,
Y = A^T [(G g G^T) * (B^T d B)] A (``rows_and_columns`` applies such a
sandwich to every tile at once). The sum over input channels commutes with
A^T .. A, so at each of the n^2 positions f of a transformed tile it is a
matrix product over channels, and the whole layer is

    V = B^T tiles(x) B,  U = G w G^T,  M[f] = U[f] V[f],  out = untile(A^T M A) + b

(U[f] is out_channels x in_channels, V[f] in_channels x tiles).

Backward: every step is linear, so each gradient is the transposed map
(the transpose of X -> P X Q^T is Z -> P^T Z Q):
dM = A tiles(dL/dout) A^T, dL/dU[f] = dM[f] V[f]^T, dL/dw = G^T dL/dU G,
dL/dV[f] = U[f]^T dM[f], and dL/dx adds B dL/dV B^T back onto the
overlapping input tiles it came from (the adjoint of cutting the tiles).

Layout: inside, images are NHWC (channels innermost) and tiles are
indexed (image, tile row, tile column) with the channels innermost, so that
each product over channels is (tiles x C) times (C x O). Measured on 2
cores, BLAS runs that orientation about a third faster than (O x C) times
(C x tiles) when C is small (32 in mnist_bn), and cutting the tiles copies
runs of C contiguous numbers. The moves between NCHW and NHWC go image by
image, each small enough to stay in the cache. This module runs on NumPy
arrays only; on the GPU ``fast/conv.py`` keeps its fused im2col kernels.
"""
import functools
from fractions import Fraction

import numpy as np

from .cpu import run_in_parallel, run_on_slices

# The interpolation points. Lavin and Gray's sequence of small numbers keeps
# the transforms' entries small, and with it F(2x2, 3x3) (3 points) rounds as
# little as a direct sum; but its larger sets round badly in float32, by 10 to 20
# times a direct sum's error for F(4x4, 3x3) (5 points) and F(4x4, 5x5) (7).
# No choice of points brings those within 3 times (docs/performance.md,
# "Winograd's precision"), so ``fast/conv.py`` uses tiles of 2 only, and for
# F(2x2, 5x5) (5 points) the set below, the best of every symmetric set of
# small fractions tried, instead of 0, +-1, +-2. Other counts take the first
# points of the sequence.
SEQUENCE = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))
PRECISE_POINTS = {5: (0, Fraction(3, 2), Fraction(-3, 2), Fraction(2, 3), Fraction(-2, 3))}


def points(count):
    """The ``count`` finite points (at most len(SEQUENCE)) of a transform with count + 1, the last infinity."""
    return PRECISE_POINTS.get(count, SEQUENCE[:count])


@functools.lru_cache(maxsize=None)
def transforms(m, r):
    """(A^T, G, B^T) of F(m, r) in float64: m x n, n x r and n x n with n = m + r - 1."""
    n = m + r - 1
    if not 1 <= n - 1 <= len(SEQUENCE):
        raise ValueError(f"winograd: F({m}, {r}) needs {n - 1} points, only {len(SEQUENCE)} are defined")
    finite = points(n - 1)

    def vandermonde(k):  # n x k: powers of each point, then the row for infinity
        rows = [[float(Fraction(a) ** j) for j in range(k)] for a in finite]
        return np.array(rows + [[0.0] * (k - 1) + [1.0]])

    return vandermonde(m).T, vandermonde(r), np.linalg.inv(vandermonde(n)).T


@functools.lru_cache(maxsize=None)
def axis_transforms(m, kernel_size, dtype):
    """((A^T, G, B^T) along rows, (A^T, G, B^T) along columns) in ``dtype``."""
    return tuple(tuple(a.astype(dtype) for a in transforms(m, r)) for r in kernel_size)


def rows_and_columns(row_matrix, column_matrix, tiles):
    """row_matrix d column_matrix^T for every tile d of tiles (n_h, n_w, ...): one product per axis.

    One product along the rows, then one per row along the columns: n_h + n_w
    multiplications per entry, where a single matrix on flattened tiles (a
    Kronecker product) would need n_h n_w.
    """
    n_h, n_w = tiles.shape[:2]
    rows = (row_matrix @ tiles.reshape(n_h, -1)).reshape(row_matrix.shape[0], n_w, -1)
    out = np.empty((row_matrix.shape[0], column_matrix.shape[0], rows.shape[2]), tiles.dtype)
    for a in range(rows.shape[0]):
        np.matmul(column_matrix, rows[a], out=out[a])
    return out


def tile_grid(out_size, m):
    """How many m x m output tiles cover the output along each axis."""
    return tuple(-(-size // m) for size in out_size)


def channels_last(x, out):
    """out[n] = x[n] with the channels moved last: (N, C, H, W) into out (N, H, W, C), image by image on threads."""
    def move(part):
        out[part] = x[part].transpose(0, 2, 3, 1)
    run_on_slices(move, x.shape[0], x)


def channels_first(x):
    """The reverse of ``channels_last``: (N, H, W, C) to a new contiguous (N, C, H, W) array."""
    out = np.empty((x.shape[0], x.shape[3], *x.shape[1:3]), x.dtype)

    def move(part):
        out[part] = x[part].transpose(0, 3, 1, 2)
    run_on_slices(move, x.shape[0], x)
    return out


def forward(x, weight, padding, m, bias=None):
    """out = conv2d(x, weight) + bias at stride 1 with ``padding`` ((top, bottom), (left, right)), by F(m x m, kH x kW).

    Returns out (N, O, Ho, Wo) and what backward needs. The bias costs no
    pass of its own: it is added while the tiles are put back together.
    """
    n_img, channels, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    (top, bottom), (left, right) = padding
    out_h, out_w = height + top + bottom - kernel_h + 1, width + left + right - kernel_w + 1
    (tiles_h, tiles_w), (n_h, n_w) = tile_grid((out_h, out_w), m), (m + kernel_h - 1, m + kernel_w - 1)
    (at_h, g_h, bt_h), (at_w, g_w, bt_w) = axis_transforms(m, (kernel_h, kernel_w), x.dtype.type)
    # zero-padded NHWC input, big enough for whole tiles
    padded = np.zeros((n_img, tiles_h * m + kernel_h - 1, tiles_w * m + kernel_w - 1, channels), x.dtype)
    channels_last(x, padded[:, top:top + height, left:left + width])
    # the input tiles, one strided slice per position (a, b) inside a tile: (nh, nw, N, th, tw, C)
    tiles = np.empty((n_h, n_w, n_img, tiles_h, tiles_w, channels), x.dtype)
    offsets = [(a, b) for a in range(n_h) for b in range(n_w)]

    def cut(part):
        for a, b in part:
            tiles[a, b] = padded[:, a:a + m * tiles_h:m, b:b + m * tiles_w:m]
    run_in_parallel(cut, offsets, x)
    n_tiles = n_img * tiles_h * tiles_w
    v = rows_and_columns(bt_h, bt_w, tiles).reshape(n_h * n_w, n_tiles, channels)
    u = rows_and_columns(g_h, g_w, weight.transpose(2, 3, 0, 1)).reshape(n_h * n_w, out_channels, channels)
    products = v @ u.transpose(0, 2, 1)  # (nh nw, tiles, O): one product over channels per tile position
    y = rows_and_columns(at_h, at_w, products.reshape(n_h, n_w, -1)).reshape(
        m, m, n_img, tiles_h, tiles_w, out_channels)
    # untile: (a, b, N, ty, tx, O) -> (N, ty m + a, tx m + b, O) (plus the bias, channels last),
    # then crop and bring the channels first
    whole = np.empty((n_img, tiles_h * m, tiles_w * m, out_channels), x.dtype)
    untiled = whole.reshape(n_img, tiles_h, m, tiles_w, m, out_channels)
    if bias is None:
        untiled[...] = y.transpose(2, 3, 0, 4, 1, 5)
    else:
        np.add(y.transpose(2, 3, 0, 4, 1, 5), bias, out=untiled)
    out = channels_first(whole[:, :out_h, :out_w])
    return out, (v, u, x.shape, padding, m)


def backward(grad, weight, saved, need_x, need_weight):
    """dL/dx and dL/dweight (each None when not needed) from dL/dout, through the transposed maps."""
    v, u, x_shape, padding, m = saved
    n_img, channels, height, width = x_shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = grad.shape[2:]
    (tiles_h, tiles_w), (n_h, n_w) = tile_grid((out_h, out_w), m), (m + kernel_h - 1, m + kernel_w - 1)
    (at_h, g_h, bt_h), (at_w, g_w, bt_w) = axis_transforms(m, (kernel_h, kernel_w), grad.dtype.type)
    n_tiles = n_img * tiles_h * tiles_w
    # dL/dout cut into output tiles (a, b, N, th, tw, O), the reverse of forward's untiling;
    # the part of the last tiles that forward cropped off gets zeros
    whole = np.zeros((n_img, tiles_h * m, tiles_w * m, out_channels), grad.dtype)
    channels_last(grad, whole[:, :out_h, :out_w])
    grad_y = np.ascontiguousarray(
        whole.reshape(n_img, tiles_h, m, tiles_w, m, out_channels).transpose(2, 4, 0, 1, 3, 5))
    grad_products = rows_and_columns(at_h.T, at_w.T, grad_y).reshape(n_h * n_w, n_tiles, out_channels)
    grad_x = grad_weight = None
    if need_weight:
        grad_u = grad_products.transpose(0, 2, 1) @ v  # (nh nw, O, C)
        grad_weight = rows_and_columns(g_h.T, g_w.T, grad_u.reshape(n_h, n_w, -1)).reshape(
            kernel_h, kernel_w, out_channels, channels).transpose(2, 3, 0, 1).copy()
    if need_x:
        grad_v = grad_products @ u  # (nh nw, tiles, C)
        grad_tiles = rows_and_columns(bt_h.T, bt_w.T, grad_v.reshape(n_h, n_w, -1)).reshape(
            n_h, n_w, n_img, tiles_h, tiles_w, channels)
        (top, _), (left, _) = padding
        padded = np.zeros((n_img, tiles_h * m + kernel_h - 1, tiles_w * m + kernel_w - 1, channels), grad.dtype)

        def add_back(part):  # tiles overlap: each thread adds every tile position for its own images
            for a in range(n_h):
                for b in range(n_w):
                    padded[part, a:a + m * tiles_h:m, b:b + m * tiles_w:m] += grad_tiles[a, b, part]
        run_on_slices(add_back, n_img, grad)
        grad_x = channels_first(padded[:, top:top + height, left:left + width])
    return grad_x, grad_weight
