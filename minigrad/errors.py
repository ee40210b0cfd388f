"""minigrad's own exception types, each also an instance of what NumPy and PyTorch code catches.

A shape that does not fit an op is a ``ValueError`` in NumPy's world and a
``RuntimeError`` in PyTorch's; code written for either should catch it, so
``ShapeError`` is both. Index errors are ``IndexError`` as in both.
"""


class ShapeError(ValueError, RuntimeError):
    """The shapes of an op's inputs do not fit: the message names the op, the shapes and what was expected."""
