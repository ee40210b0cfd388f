"""Tools around the engine: gradient checking, graph pictures, Keras-style model summaries."""
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .graphviz import draw_graph
from .summary import summary

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError", "draw_graph", "summary"]
