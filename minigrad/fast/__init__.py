"""How minigrad is made quick: fast first-order drop-ins for the textbook rules of ``minigrad/ops``.

Each module here holds, for one family of ops, subclasses of the textbook
nodes that run a faster forward (Winograd, per-image products, pooling
routes, threads, fused CuPy kernels) and a first-order rule on raw arrays
(``backward_arrays``), and lists them in its ``DROP_INS``: textbook rule ->
fast version. This file is the one place that puts them in use, through
``config.drop_ins``; ``mg.config.fast = False`` (or ``MINIGRAD_FAST=0``)
leaves every textbook rule in place. A drop-in inherits its rule's textbook
``backward``, which ``create_graph`` runs, so every drop-in only needs to
agree with its rule to first order: ``tests/test_fast*.py`` check that each does.
"""
from .. import config
from . import cpu  # noqa: F401  (the thread pool; reads OpenBLAS's settings again if NumPy came first)

from . import adam, conv, dropout, elementwise, loss, matmul, norm, pool, reduce, shape

_FAMILIES = (elementwise, reduce, shape, matmul, conv, pool, norm, loss, dropout, adam)

for _family in _FAMILIES:
    config.drop_ins.update(_family.DROP_INS)
