"""Draw the figures of docs/ (needs Graphviz' `dot`): python docs/make_figures.py

images/small_network_graph.svg: the graph of Linear -> BatchNorm1d -> ReLU ->
Linear -> cross_entropy on a batch of 16, as engine.md shows it.
"""
import os

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def small_network_graph(path):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x, labels = mg.randn(16, 4), mg.tensor([0, 1, 2, 0] * 4)
    loss = F.cross_entropy(model(x), labels)
    written = mg.utils.draw_graph(loss, path, params=dict(model.named_parameters()))
    for extra in written:
        if extra != path:
            os.remove(extra)  # the .dot source beside the picture: its node ids change every run
    return path


if __name__ == "__main__":
    os.makedirs(os.path.join(HERE, "images"), exist_ok=True)
    print(small_network_graph(os.path.join(HERE, "images", "small_network_graph.svg")))
