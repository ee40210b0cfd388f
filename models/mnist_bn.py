"""Seed 004: a two-block convolutional network with BatchNorm for MNIST (TensorFlow 1 in the original).

    (N, 1, 28, 28)
    conv 5x5, 1 -> 32, SAME -> BatchNorm -> ReLU -> max-pool 2x2   (N, 32, 14, 14)
    conv 5x5, 32 -> 64, SAME -> BatchNorm -> ReLU -> max-pool 2x2  (N, 64, 7, 7)
    flatten -> Linear 3136 -> 1024 -> ReLU -> Dropout(0.5)
    Linear 1024 -> 10 (logits; the softmax lives in cross_entropy)

The seed's BatchNorm keeps moving averages with decay 0.9 (momentum 0.1
here) and epsilon 1e-3, and learns gamma and beta. Its weights start from a
truncated normal with std 0.01 and its biases at 0.01; ``init="pytorch"``
keeps PyTorch's default initialisation instead.
"""
from minigrad import nn

DEFAULTS = {"dataset": "mnist", "epochs": 5, "batch_size": 64, "lr": 5e-4, "optimizer": "adam"}


def _block(in_channels, out_channels, batch_norm):
    layers = [nn.Conv2d(in_channels, out_channels, 5, padding="same")]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.1))
    return layers + [nn.ReLU(), nn.MaxPool2d(2)]


def seed_init_(model):
    """The seed's initialisation: weights ~ truncated normal(0, 0.01) cut at 2 std, biases 0.01."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
            nn.init.constant_(module.bias, 0.01)
    return model


def build(batch_norm=True, init="seed", dropout=0.5):
    """The seed-004 network; ``batch_norm=False`` drops the BN layers for comparisons."""
    model = nn.Sequential(
        *_block(1, 32, batch_norm),
        *_block(32, 64, batch_norm),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(1024, 10),
    )
    if init == "seed":
        seed_init_(model)
    elif init != "pytorch":
        raise ValueError(f"mnist_bn: init must be 'seed' or 'pytorch', got {init!r}")
    return model
