"""Seeds 002 and 003: a multilayer perceptron with BatchNorm between the affine layer and the ReLU.

    (N, 20) -> Linear 50 -> BatchNorm1d(50) -> ReLU -> Linear 10 (logits)

Seed 002 (PyTorch) trains it with Adam, lr 1e-3, on batches of 32 random
inputs and labels for 100 steps; seed 003 writes the same BatchNorm by hand
in TensorFlow (``tf.nn.moments`` + ``tf.nn.batch_normalization``, eps 1e-3).
"""
from minigrad import nn

DEFAULTS = {"dataset": "synthetic", "epochs": 1, "batch_size": 32, "lr": 1e-3, "optimizer": "adam"}  # 100 steps


def build(batch_norm=True, in_features=20, hidden=50, classes=10):
    """The seed-002 network; ``batch_norm=False`` drops the BN layer for comparisons."""
    norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
    return nn.Sequential(nn.Linear(in_features, hidden), *norm, nn.ReLU(), nn.Linear(hidden, classes))
