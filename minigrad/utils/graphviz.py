"""draw_graph: a picture of the graph that produced a tensor, in Graphviz' DOT language.

The graph is what ``Function.apply`` records: each tensor points at the node
that made it (``tensor.grad_fn``), each node at the tensors it read
(``node.inputs``). A node does not keep its output, so the walk goes from
tensor to tensor: the tensor whose ``grad_fn`` is a node gives that node's
output shape and dtype. The walk uses an explicit stack, not recursion, so a
chain of 10,000 ops draws as well as a chain of three.

In the picture, data flows downwards: leaves at the top, the given tensor's
node at the bottom.

- op nodes (grey, rounded; the final one green): the op's name, e.g.
  ``Conv2d``, with its output's shape and dtype;
- parameters (blue): leaves with ``requires_grad``, named when ``params``
  names them (``params=dict(model.named_parameters())``);
- inputs (white): every other leaf, such as the data and the labels.

``backward()`` without ``retain_graph=True`` frees each node's saved arrays
but keeps its ``inputs``, so such a graph can still be drawn; its op nodes get
a dashed outline to show that a second backward through them would fail.
"""
import os
import shutil
import subprocess
import warnings

import numpy as np

from .. import backend

FORMATS = ("svg", "png", "pdf")  # rendered by `dot`; ".dot" and ".gv" ask for the DOT text only
LEAF_COLOURS = {"parameter": "lightblue", "input": "white"}


def draw_graph(tensor, path, show_grad=False, params=None):
    """Write the graph that produced ``tensor`` as DOT, and render it when the extension asks.

    ``path`` ending in ``.dot`` or ``.gv`` gives the DOT file only; ``.svg``,
    ``.png`` or ``.pdf`` writes the DOT beside it (same name, ``.dot``) and
    runs Graphviz' ``dot`` to render it. Without ``dot`` installed, only the
    DOT file is written and a warning (``UserWarning``) says how to install
    Graphviz. ``params`` maps names to parameters to label them, e.g.
    ``dict(model.named_parameters())``. ``show_grad=True`` adds to each
    parameter the norm of its ``.grad`` ("None" before ``backward``).
    Returns the list of paths written, the DOT file first.
    """
    stem, extension = os.path.splitext(os.fspath(path))
    kind = extension.lower().lstrip(".")
    if kind not in FORMATS + ("dot", "gv"):
        raise ValueError(f"draw_graph: path must end in .dot, .gv, {', '.join('.' + f for f in FORMATS)}; "
                         f"got {os.fspath(path)!r}")
    dot_path = os.fspath(path) if kind in ("dot", "gv") else stem + ".dot"
    with open(dot_path, "w") as file:
        file.write(to_dot(tensor, show_grad=show_grad, params=params))
    if kind in ("dot", "gv"):
        return [dot_path]
    dot = shutil.which("dot")
    if dot is None:
        warnings.warn(f"draw_graph: Graphviz' `dot` was not found, so only {dot_path} was written; "
                      f"`apt-get install graphviz` renders it (dot -T{kind} {dot_path} -o {path})",
                      stacklevel=2)
        return [dot_path]
    result = subprocess.run([dot, f"-T{kind}", dot_path, "-o", os.fspath(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"draw_graph: `dot -T{kind}` failed on {dot_path}: {result.stderr.strip()}")
    return [dot_path, os.fspath(path)]


def to_dot(tensor, show_grad=False, params=None):
    """The DOT text of the graph that produced ``tensor`` (what ``draw_graph`` writes)."""
    names = {id(value): name for name, value in (params or {}).items()}
    lines = ["digraph minigrad {", '  node [fontname="Helvetica", fontsize=10];']
    seen = set()
    stack = [tensor]
    while stack:
        current = stack.pop()
        node = current.grad_fn
        key = _dot_name(current)
        if key in seen:
            continue
        seen.add(key)
        if node is None:
            lines.append(_leaf_line(key, current, names.get(id(current)), show_grad))
            continue
        colour = "palegreen" if current is tensor else "lightgrey"
        dashed = ",dashed" if getattr(node, "freed", False) else ""
        label = f"{node.name}\n{_describe(current)}"
        lines.append(f'  {key} [label={_quote(label)}, shape=box, style="rounded,filled{dashed}", '
                     f"fillcolor={colour}];")
        for parent in node.inputs:
            if parent is not None:
                lines.append(f"  {_dot_name(parent)} -> {key};")
                stack.append(parent)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_name(tensor):
    """The DOT name of what produced ``tensor``: ``op<id(node)>``, or ``leaf<id(tensor)>`` for a leaf.

    Names come from ``id()``, as in torchviz, so that a test can match the
    picture against the graph; every object is alive while the graph is.
    """
    if tensor.grad_fn is not None:
        return f"op{id(tensor.grad_fn)}"
    return f"leaf{id(tensor)}"


def _leaf_line(key, tensor, name, show_grad):
    kind = "parameter" if tensor.requires_grad else "input"
    label = f"{name or kind}\n{_describe(tensor)}"
    if show_grad and tensor.requires_grad:
        grad = tensor.grad
        norm = "None" if grad is None else f"{float(np.linalg.norm(backend.as_numpy(grad.data))):.4g}"
        label += f"\ngrad norm {norm}"
    return f"  {key} [label={_quote(label)}, shape=box, style=filled, fillcolor={LEAF_COLOURS[kind]}];"


def _describe(tensor):
    return f"{tuple(tensor.shape)} {tensor.dtype}"


def _quote(text):
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as DOT's centred \\n."""
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'
