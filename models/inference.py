"""Using a trained checkpoint: the model rebuilt in eval mode, and its inputs prepared as in training.

``evaluate.py`` and ``predict.py`` run on these, so both see an image exactly
as the training run saw its test images.
"""
import argparse
import json

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.data import transforms

from . import datasets, training
from .training import model_input
from .cli import DataError, user_files


def preparer(checkpoint, run, device):
    """The function that turns a batch of images into the model's input, as in training (no augmentation)."""
    normalize = None
    if run.standardize:  # the training images' statistics (older checkpoints keep them as (C, 1, 1))
        normalize = transforms.Normalize(np.asarray(checkpoint["mean"]).reshape(-1),
                                         np.asarray(checkpoint["std"]).reshape(-1))
    return lambda images, training=False: model_input(images, normalize, device)  # never augmented


def load_run(path, device):
    """(checkpoint, the run's options, the model in eval mode with the checkpoint's weights)."""
    checkpoint = training.read_checkpoint(path)
    run = training.fill_defaults(argparse.Namespace(**json.loads(checkpoint["args"])))
    run.device = device
    training.check_device(device)
    model = training.build_model(run).to(device)
    with user_files(f"checkpoint {path}"):
        model.load_state_dict(checkpoint["model"])
    model.eval()
    return checkpoint, run, model


def classify(model, prepare, images, top=1):
    """For each image (float32 (N, C, H, W)), the ``top`` (class index, probability) pairs, most likely first."""
    with mg.no_grad():
        probabilities = F.softmax(model(prepare(images)), axis=1).numpy()
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [[(int(c), float(p[c])) for c in row] for p, row in zip(probabilities, order)]


def image_shape(checkpoint, run):
    """The (C, H, W) the run's model takes: saved in the checkpoint, or known from its data set."""
    shape = checkpoint.get("input_shape")
    shape = tuple(int(s) for s in shape) if shape is not None else datasets.input_shape(run.dataset, run.image_size)
    if shape is None or len(shape) != 3:
        raise DataError(f"{run.model} was trained on {run.dataset}, which is not images: nothing to predict "
                        "from an image file")
    return shape
