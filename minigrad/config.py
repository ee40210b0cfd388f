"""minigrad's settings, in one place: read once from the environment at import, changeable in code.

- ``fast`` (``MINIGRAD_FAST``, default on): the fast first-order paths of
  ``minigrad/fast/``. Each op's textbook rule (``minigrad/ops/``, its
  backward written with Tensor ops) is always there; with ``fast`` on, an op
  that has a fast drop-in runs that one instead (``chosen``), and its first
  order rule on raw arrays (``backward_arrays``) runs when no graph of the
  gradient is asked for. Off, every op runs its textbook rule: the same
  results within rounding, slower. ``with mg.config.textbook():`` turns it
  off for a block.
- ``threads`` (``MINIGRAD_NUM_THREADS``, default 0: every core): how many
  threads the fast CPU passes share their work among.
- ``winograd`` (``MINIGRAD_WINOGRAD``, default on): stride-1 convolutions on
  the CPU may take Winograd's algorithm (``fast/winograd.py``); off keeps them
  on one matrix product.
- ``allow_tf32`` (default off): float32 matrix products on the GPU may round
  to TF32 (10-bit mantissas) for speed; off, they round as the CPU does.
  Read when CuPy is first used, so set it before the first GPU op.

Set a value in code (``mg.config.fast = False``) or in the environment
before the first ``import minigrad`` (``MINIGRAD_FAST=0``).
"""
import contextlib
import os
import sys


def _flag(name, default):
    """An on/off environment variable: "0", "false", "no" and "off" are off; anything else is on."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _count(name):
    """A non-negative whole number from the environment (0 when unset), or an error naming the variable."""
    value = os.environ.get(name, "").strip() or "0"
    if not value.isdigit():
        raise ValueError(f"${name} must be a whole number of threads (0: every core), got {value!r}")
    return int(value)


fast = _flag("MINIGRAD_FAST", True)
threads = _count("MINIGRAD_NUM_THREADS")
winograd = _flag("MINIGRAD_WINOGRAD", True)
allow_tf32 = False

# OpenBLAS's idle threads spin for 2^28 cycles after every product by default, holding
# a core that the fast layer's own threads then wait for; 2^20 keeps them awake only
# between the products of one layer (docs/performance.md). A value already set is kept;
# fast/cpu.py makes OpenBLAS read it again when NumPy was loaded before minigrad.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")
numpy_loaded_first = "numpy" in sys.modules

# The fast drop-ins, filled by minigrad/fast/__init__.py: a textbook rule (a Function
# class or a function) -> the fast version that replaces it while ``fast`` is on.
drop_ins = {}


def chosen(rule):
    """The version of ``rule`` to run now: its fast drop-in while ``fast`` is on, else the rule itself."""
    return drop_ins.get(rule, rule) if fast else rule


@contextlib.contextmanager
def textbook():
    """Run only the textbook rules inside the block (``fast`` off), then restore the setting."""
    global fast
    previous, fast = fast, False
    try:
        yield
    finally:
        fast = previous
