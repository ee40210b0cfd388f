"""The data set each seed trains on, by the name in a model's ``DEFAULTS["dataset"]``.

``load(name, split, data_dir=None, image_size=None)`` returns a Dataset with
``.arrays`` (images float32 NCHW in [0, 1], labels int64) and ``.classes``;
``split`` is ``"train"`` or ``"test"`` (Dogs vs. Cats calls it ``validation``).
``data_dir`` is where the files are (it is passed on as the loaders' ``root``);
without it each loader looks in ``$MINIGRAD_DATA/<name>`` and ``~/.cache/minigrad/<name>``.
"""
import os

import numpy as np

from minigrad import data
from minigrad.data import find

SPLITS = ("train", "test")


def load(name, split, data_dir=None, image_size=None):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    train = split == "train"
    if name == "mnist":
        return data.MNIST(data_dir, train=train)
    if name == "fashion-mnist":
        return data.FashionMNIST(data_dir, train=train)
    if name == "cifar10":
        return data.CIFAR10(data_dir, train=train)
    if name == "dogs-vs-cats":
        folder = dogs_vs_cats_folder(data_dir)
        size = image_size or 224
        return data.ImageFolder(os.path.join(folder, "train" if train else "validation"), size=(size, size))
    if name == "synthetic":
        return synthetic(train)
    raise ValueError(f"unknown data set {name!r}; choose mnist, fashion-mnist, cifar10, dogs-vs-cats or synthetic")


def dogs_vs_cats_folder(data_dir=None):
    """The folder holding ``train/{cats,dogs}`` and ``validation/{cats,dogs}``, as Keras' flow_from_directory expects."""
    def missing(folder):
        return [split for split in ("train", "validation") if not os.path.isdir(os.path.join(folder, split))]
    return find.locate("Dogs vs. Cats", "dogs-vs-cats", missing, root=data_dir,
                       how_to_get="download train.zip from https://www.kaggle.com/c/dogs-vs-cats/data and sort it "
                                  "into train/{cats,dogs} and validation/{cats,dogs} folders, then pass --data-dir")


def synthetic(train, size=3200, features=20, classes=10):
    """Seed 002's setting, made learnable: 20 random features, the class is which of the first 10 is largest.

    Seed 002 feeds random inputs with random labels, which nothing can learn;
    this keeps its shapes but gives accuracy a meaning. Train and test differ in their seed.
    """
    rng = np.random.default_rng(2 if train else 3)
    x = rng.standard_normal((size if train else size // 4, features)).astype(np.float32)
    dataset = data.TensorDataset(x, x[:, :classes].argmax(axis=1).astype(np.int64))
    dataset.classes = [str(c) for c in range(classes)]
    return dataset
