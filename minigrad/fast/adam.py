"""Fast Adam step: one fused kernel on a GPU; on the CPU, in place with one scratch array, in threads and pieces.

The textbook step (``optim/adam.py: adam_step``) writes each line as a fresh
expression. Here the same operations, in the same order (so the same bits):

- on a GPU, one launch of ``cuda_kernels.adam_update`` instead of about ten;
- on the CPU, every line in place into one scratch array the size of the
  piece, so no temporaries are allocated;
- a big weight is updated in slices, one per thread (NumPy runs each line
  on one core, and every weight's update is independent of the others);
- each thread goes through its slice in pieces of ``_PIECE`` weights, so
  that the passes of ``update_in_place`` find the piece of p, m, v, grad and
  the scratch array still in the processor's cache, instead of streaming
  big arrays through main memory once per line (docs/performance.md).
"""
from .. import backend
from ..optim import adam
from . import cuda_kernels
from .cpu import run_on_slices

# Below this many weights a thread's start costs more than it saves: smaller weights
# are updated in one piece (run_on_slices' min_size).
_PARALLEL_SIZE = 1 << 18
# 256 Ki weights, 1 MiB per float32 array: five such arrays per thread fit in a
# processor's cache, and fewer, larger pieces keep the Python calls per piece cheap.
_PIECE = 1 << 18


def fast_adam_step(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size):
    """``adam_step``'s drop-in: the same update of p, m and v in place, bit for bit."""
    if backend.is_cupy_array(p):  # the same operations in one fused launch
        cuda_kernels.adam_update(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size)
        return
    arrays = (p, m, v, grad)
    if not all(a.flags.c_contiguous for a in arrays):
        update_in_place(*arrays, beta1, beta2, bias_correction2_sqrt, eps, step_size)
        return
    flat = [a.reshape(-1) for a in arrays]
    piece_size = _PIECE

    def update(part):
        for start in range(part.start, part.stop, piece_size):
            piece = slice(start, min(start + piece_size, part.stop))
            update_in_place(*(a[piece] for a in flat), beta1, beta2, bias_correction2_sqrt, eps, step_size)
    run_on_slices(update, p.size, p, min_size=_PARALLEL_SIZE)


def update_in_place(p, m, v, grad, beta1, beta2, bias_correction2_sqrt, eps, step_size):
    """Adam's update of NumPy arrays p, m and v in place, with one scratch array the size of p."""
    xp = backend.get_array_module(p)
    scratch = grad * (1 - beta1)
    m *= beta1
    m += scratch                                     # m_t
    xp.multiply(grad, grad, out=scratch)
    scratch *= 1 - beta2
    v *= beta2
    v += scratch                                     # v_t
    xp.sqrt(v, out=scratch)
    scratch /= bias_correction2_sqrt
    scratch += eps                                   # sqrt(v_hat) + eps
    xp.divide(m, scratch, out=scratch)
    scratch *= step_size
    p -= scratch


DROP_INS = {adam.adam_step: fast_adam_step}
