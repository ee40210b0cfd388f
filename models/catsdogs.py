"""Seed 001: three Keras models for Kaggle's Dogs vs. Cats, shared by the three ``catsdogs_*`` files.

Keras' choices that differ from PyTorch's are kept: BatchNorm with momentum
0.01 (Keras ``momentum=0.99`` is a decay) and epsilon 1e-3, and Conv2D/Dense
kernels initialised glorot-uniform (``xavier_uniform_``) with zero biases.
"""
from minigrad import nn

IMAGE_SIZE = 224  # flow_from_directory(target_size=(224, 224)) in the seed


def input_batch_norm(batch_norm):
    """The seed's first layer: a BatchNorm over the three colour channels of the raw input."""
    return [nn.BatchNorm2d(3, eps=1e-3, momentum=0.01)] if batch_norm else []


def keras_init_(model):
    """Glorot-uniform weights and zero biases for every Conv2d and Linear, as Keras does."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def finish(model, init):
    if init == "keras":
        return keras_init_(model)
    if init != "pytorch":
        raise ValueError(f"catsdogs: init must be 'keras' or 'pytorch', got {init!r}")
    return model
