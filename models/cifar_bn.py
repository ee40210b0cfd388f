"""Seed 000: five conv-BN-ReLU blocks on CIFAR-10 (TensorFlow 1 contrib ``batch_norm`` in the original).

    (N, 3, 32, 32)
    4 x [conv 3x3 SAME + bias -> BatchNorm -> ReLU -> max-pool 2x2]   channels 3 -> 64 -> 64 -> 32 -> 16
        32 -> 16 -> 8 -> 4 -> 2 pixels
    conv 3x3 SAME, 16 -> 10 -> BatchNorm -> ReLU -> global average pool -> (N, 10) logits

The seed calls ``batch_norm(value, decay=0.9, updates_collections=None,
is_training=...)``, so TF contrib's defaults hold: epsilon 1e-3, a learned
beta (``center=True``) but no gamma (``scale=False``). Here: momentum
0.1 (= 1 - decay), eps 1e-3, and the BatchNorm weight removed. The seed
does not give its learning rate; Adam's default 1e-3 is used. Its
``tf.layers.conv2d`` kernels start glorot-uniform with zero biases
(``init="glorot"``); ``"pytorch"`` and ``"small"`` (normal, std 0.01, cut at
2 std, biases 0.01, as seed 004) are there for comparisons.
"""
from minigrad import nn

DEFAULTS = {"dataset": "cifar10", "epochs": 10, "batch_size": 64, "lr": 1e-3, "optimizer": "adam"}
CHANNELS = [3, 64, 64, 32, 16, 10]
INITS = ("glorot", "pytorch", "small")


def _batch_norm(channels):
    layer = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1)
    layer.weight = None  # TF contrib batch_norm's scale=False: beta only, no gamma
    return layer


def build(batch_norm=True, init="glorot"):
    """The seed-000 network; ``batch_norm=False`` drops the BN layers for comparisons."""
    if init not in INITS:
        raise ValueError(f"cifar_bn: init must be one of {INITS}, got {init!r}")
    layers = []
    for block, (in_channels, out_channels) in enumerate(zip(CHANNELS, CHANNELS[1:])):
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding="same"))
        if batch_norm:
            layers.append(_batch_norm(out_channels))
        layers.append(nn.ReLU())
        layers.append(nn.MaxPool2d(2) if block < 4 else nn.AdaptiveAvgPool2d(1))
    model = nn.Sequential(*layers, nn.Flatten())
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and init == "glorot":
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d) and init == "small":
            nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
            nn.init.constant_(module.bias, 0.01)
    return model
