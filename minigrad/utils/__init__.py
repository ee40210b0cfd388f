"""Tools around the engine: gradient checking (and, later, graph drawing and summaries)."""
from .gradcheck import GradcheckError, gradcheck

__all__ = ["gradcheck", "GradcheckError"]
