"""cupy._core in the stand-in: only the linear-algebra settings minigrad pins."""
from . import _routines_linalg  # noqa: F401
