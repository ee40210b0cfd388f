"""Seed 001, the first model: logistic regression on raw pixels, after a BatchNorm of the input.

    (N, 3, S, S) -> BatchNorm2d(3) -> Flatten -> Linear 3*S*S -> 2 (logits)

S is 224 in the seed; a smaller ``image_size`` trains faster on a CPU.
"""
from minigrad import nn

from .catsdogs import IMAGE_SIZE, finish, input_batch_norm

DEFAULTS = {"dataset": "dogs-vs-cats", "epochs": 200, "batch_size": 10, "lr": 0.01, "optimizer": "adam",
            "image_size": IMAGE_SIZE}


def build(batch_norm=True, image_size=IMAGE_SIZE, init="keras"):
    """The seed's logistic model; ``batch_norm=False`` drops the input BatchNorm."""
    model = nn.Sequential(*input_batch_norm(batch_norm), nn.Flatten(), nn.Linear(3 * image_size * image_size, 2))
    return finish(model, init)
