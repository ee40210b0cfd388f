"""Seed 001, the third model: seven narrow conv-pool blocks down to one pixel.

    (N, 3, S, S) -> BatchNorm2d(3)
    -> 7 x [conv 2x2, 20 channels, SAME -> ReLU -> max-pool 2x2]   224 -> 112 -> ... -> 3 -> 1
    -> Flatten (20 * r * r, r = 1 for S = 224) -> Linear -> 2 (logits)

Keras' SAME for an even kernel pads 0 before and 1 after; ``padding="same"``
here splits the padding the same way.
"""
from minigrad import nn

from .catsdogs import IMAGE_SIZE, finish, input_batch_norm

DEFAULTS = {"dataset": "dogs-vs-cats", "epochs": 200, "batch_size": 10, "lr": 0.01, "optimizer": "adam",
            "image_size": IMAGE_SIZE}
BLOCKS = 7
CHANNELS = 20


def build(batch_norm=True, image_size=IMAGE_SIZE, init="keras"):
    """The seed's deep model; ``batch_norm=False`` drops the input BatchNorm."""
    layers, channels, size = input_batch_norm(batch_norm), 3, image_size
    for _ in range(BLOCKS):
        if size < 2:
            raise ValueError(f"catsdogs_deep: image_size {image_size} is too small for {BLOCKS} 2x2 poolings "
                             f"(at least {2 ** BLOCKS})")
        layers += [nn.Conv2d(channels, CHANNELS, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
        channels, size = CHANNELS, size // 2
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS * size * size, 2))
    return finish(model, init)
