"""draw_graph: the DOT text matches the graph node for node and edge for edge, and renders."""
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.utils import draw_graph
from models import build

NODE = re.compile(r'^  (\w+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
EDGE = re.compile(r"^  (\w+) -> (\w+);$")


def parse(dot_text):
    """{name: (label, attributes)} and the list of (source, target) edges of our DOT output."""
    nodes, edges = {}, []
    for line in dot_text.splitlines():
        if match := NODE.match(line):
            nodes[match[1]] = (match[2].replace("\\n", "\n"), match[3])
        elif match := EDGE.match(line):
            edges.append((match[1], match[2]))
    return nodes, edges


def walk(tensor):
    """Our own walk of the graph: every Function node, and each (producer, consumer) input slot, by DOT name."""
    def name(t):
        return f"op{id(t.grad_fn)}" if t.grad_fn is not None else f"leaf{id(t)}"

    functions, edges, stack = {}, [], [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if f"op{id(node)}" in functions:
            continue
        functions[f"op{id(node)}"] = node
        for parent in node.inputs:
            if parent is not None:
                edges.append((name(parent), f"op{id(node)}"))
                if parent.grad_fn is not None:
                    stack.append(parent.grad_fn)
    return functions, edges


@pytest.fixture
def mnist_loss():
    mg.manual_seed(0)
    model = build("mnist_bn")
    x = mg.randn(2, 1, 28, 28)
    loss = F.cross_entropy(model(x), mg.tensor([3, 7]))
    return model, x, loss


def test_mnist_graph_has_one_node_per_op_and_the_graphs_edges(tmp_path, mnist_loss):
    model, x, loss = mnist_loss
    paths = draw_graph(loss, tmp_path / "graph.dot", params=dict(model.named_parameters()))
    assert paths == [str(tmp_path / "graph.dot")]
    nodes, edges = parse(open(paths[0]).read())
    functions, graph_edges = walk(loss)
    op_nodes = {name for name in nodes if name.startswith("op")}
    assert op_nodes == set(functions) and len(functions) == 14  # conv, bn, relu, pool twice; reshape, ...
    assert set(edges) == set(graph_edges) and len(edges) == len(graph_edges)
    assert all(source in nodes and target in nodes for source, target in edges)
    # Each op's label: its name, then its output's shape and dtype.
    for name, node in functions.items():
        assert nodes[name][0].split("\n")[0] == node.name
    names = [label.split("\n")[0] for label, _ in nodes.values()]
    assert sorted(n for n in names if n[0].isupper()) == sorted(
        ["Conv2d", "BatchNorm", "ReLU", "MaxPool2d"] * 2 + ["Reshape", "Linear", "ReLU", "Dropout", "Linear",
                                                          "CrossEntropy"])
    assert nodes[f"op{id(loss.grad_fn)}"][0] == "CrossEntropy\n() float32"
    labels = [label for label, _ in nodes.values()]
    assert "Conv2d\n(2, 32, 28, 28) float32" in labels and "Conv2d\n(2, 64, 14, 14) float32" in labels
    assert "Reshape\n(2, 3136) float32" in labels
    # Parameters: named, shaped and blue; the image batch and labels are plain inputs.
    for param_name, param in model.named_parameters():
        label, attributes = nodes[f"leaf{id(param)}"]
        assert label == f"{param_name}\n{param.shape} float32" and "fillcolor=lightblue" in attributes
    assert nodes[f"leaf{id(x)}"] == ("input\n(2, 1, 28, 28) float32",
                                     "shape=box, style=filled, fillcolor=white")
    assert len(nodes) == 14 + 12 + 2  # ops, parameters (weight and bias of 6 layers), images and labels


def test_show_grad_labels_each_parameter_with_its_gradient_norm(tmp_path, mnist_loss):
    model, x, loss = mnist_loss
    params = dict(model.named_parameters())
    before, _ = parse(open(draw_graph(loss, tmp_path / "a.dot", show_grad=True, params=params)[0]).read())
    assert before[f"leaf{id(params['0.weight'])}"][0].endswith("grad norm None")
    loss.backward(retain_graph=True)
    nodes, _ = parse(open(draw_graph(loss, tmp_path / "b.dot", show_grad=True, params=params)[0]).read())
    for name, param in params.items():
        norm = np.linalg.norm(param.grad.numpy())
        label = nodes[f"leaf{id(param)}"][0]
        assert label.endswith(f"\ngrad norm {norm:.4g}"), (name, label)
    assert "grad" not in nodes[f"leaf{id(x)}"][0]  # an input needs no gradient and has none
    assert not any("dashed" in attributes for _, attributes in nodes.values())


def test_a_freed_graph_still_draws_with_dashed_ops(tmp_path, mnist_loss):
    # backward without retain_graph frees each node's saved arrays but keeps node.inputs.
    model, x, loss = mnist_loss
    loss.backward()
    nodes, edges = parse(open(draw_graph(loss, tmp_path / "g.dot", show_grad=True)[0]).read())
    functions, graph_edges = walk(loss)
    assert set(edges) == set(graph_edges)
    assert all("dashed" in nodes[name][1] for name in functions)
    assert "grad norm" in nodes[f"leaf{id(model[0].weight)}"][0]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz' dot is not installed")
@pytest.mark.parametrize("extension", ["svg", "png"])
def test_renders_with_dot(tmp_path, mnist_loss, extension):
    model, _, loss = mnist_loss
    paths = draw_graph(loss, tmp_path / f"graph.{extension}", params=dict(model.named_parameters()))
    assert paths == [str(tmp_path / "graph.dot"), str(tmp_path / f"graph.{extension}")]
    if extension == "svg":
        root = ElementTree.parse(paths[1]).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
        assert "Conv2d" in texts and "0.weight" in texts and "(2, 32, 28, 28) float32" in texts
    else:
        assert open(paths[1], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_dot_writes_the_dot_file_and_warns(tmp_path, monkeypatch, mnist_loss):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="apt-get install graphviz"):
        paths = draw_graph(mnist_loss[2], tmp_path / "graph.svg")
    assert paths == [str(tmp_path / "graph.dot")]
    assert open(paths[0]).read().startswith("digraph minigrad {")
    assert not (tmp_path / "graph.svg").exists()


def test_a_chain_of_10000_ops_needs_no_recursion(tmp_path):
    assert sys.getrecursionlimit() < 10_000  # so a recursive walk would fail here
    x = mg.ones(3, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = -y
    nodes, edges = parse(open(draw_graph(y, tmp_path / "chain.dot")[0]).read())
    assert len(nodes) == 10_001 and len(edges) == 10_000
    assert sum(label.startswith("Neg\n(3,) float32") for label, _ in nodes.values()) == 10_000


def test_a_tensor_without_a_graph_is_a_single_node(tmp_path):
    for t, kind in [(mg.ones(2, 3), "input"), (mg.ones(4, requires_grad=True), "parameter")]:
        nodes, edges = parse(open(draw_graph(t, tmp_path / "leaf.gv")[0]).read())
        assert list(nodes.values())[0][0] == f"{kind}\n{t.shape} float32"
        assert len(nodes) == 1 and edges == []


def test_labels_are_escaped_for_dot(tmp_path):
    weight = mg.ones(2, requires_grad=True)
    nodes, _ = parse(open(draw_graph((weight * 2).sum(), tmp_path / "g.dot",
                                     params={'odd "name" \\ here': weight})[0]).read())
    assert nodes[f"leaf{id(weight)}"][0] == 'odd \\"name\\" \\\\ here\n(2,) float32'
    if shutil.which("dot"):
        svg = draw_graph((weight * 2).sum(), tmp_path / "g.svg", params={'odd "name" \\ here': weight})[1]
        texts = [e.text for e in ElementTree.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text")]
        assert 'odd "name" \\ here' in texts


def test_a_tensor_used_twice_gets_two_edges_and_bad_paths_are_refused(tmp_path):
    x = mg.ones(2, requires_grad=True)
    _, edges = parse(open(draw_graph(x * x, tmp_path / "square.dot")[0]).read())
    assert len(edges) == 2 and len(set(edges)) == 1
    with pytest.raises(ValueError, match=r"draw_graph: path must end in \.dot"):
        draw_graph(x * x, tmp_path / "square.jpeg2000")
