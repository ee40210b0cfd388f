"""Seed 001, the second model: one wide layer of 100 small filters, pooled hard.

    (N, 3, S, S) -> BatchNorm2d(3) -> conv 2x2, 3 -> 100, valid -> ReLU
    -> max-pool 16x16 (S-1 -> (S-1)//16) -> Flatten -> Linear -> 2 (logits)

With the seed's S = 224: 223 -> 13 pixels, 100*13*13 = 16,900 features.
"""
from minigrad import nn

from .catsdogs import IMAGE_SIZE, finish, input_batch_norm

DEFAULTS = {"dataset": "dogs-vs-cats", "epochs": 200, "batch_size": 10, "lr": 1e-3, "optimizer": "adam",
            "image_size": IMAGE_SIZE}


def build(batch_norm=True, image_size=IMAGE_SIZE, init="keras"):
    """The seed's wide model; ``batch_norm=False`` drops the input BatchNorm."""
    pooled = (image_size - 1) // 16
    if pooled < 1:
        raise ValueError(f"catsdogs_wide: image_size must be at least 17, got {image_size}")
    model = nn.Sequential(*input_batch_norm(batch_norm),
                          nn.Conv2d(3, 100, 2), nn.ReLU(), nn.MaxPool2d(16),
                          nn.Flatten(), nn.Linear(100 * pooled * pooled, 2))
    return finish(model, init)
