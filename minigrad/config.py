"""minigrad's settings, in one place: read once from the environment at import, changeable in code.

- ``fast`` (``MINIGRAD_FAST``, default on): the fast first-order paths.
  Each op's textbook rule, its backward written with Tensor ops, is always
  there; where an op also has a first-order rule on raw arrays
  (``backward_arrays``), that one runs when ``fast`` is on and no graph of
  the gradient is asked for. Off, every backward runs the textbook rules:
  the same results within rounding, slower. ``with mg.config.textbook():``
  turns it off for a block.

Set a value in code (``mg.config.fast = False``) or in the environment
before the first ``import minigrad`` (``MINIGRAD_FAST=0``).
"""
import contextlib
import os


def _flag(name, default):
    """An on/off environment variable: "0", "false", "no" and "off" are off; anything else is on."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


fast = _flag("MINIGRAD_FAST", True)


@contextlib.contextmanager
def textbook():
    """Run only the textbook rules inside the block (``fast`` off), then restore the setting."""
    global fast
    previous, fast = fast, False
    try:
        yield
    finally:
        fast = previous
