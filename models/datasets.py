"""The data set each seed trains on, by the name in a model's ``DEFAULTS["dataset"]``.

``load(name, split, data_dir=None, image_size=None)`` returns a Dataset with
``.arrays`` (images float32 NCHW in [0, 1], labels int64) and ``.classes``;
``split`` is ``"train"`` or ``"test"`` (Dogs vs. Cats calls it ``validation``).
``data_dir`` is where the files are (it is passed on as the loaders' ``root``);
without it each loader looks in ``$MINIGRAD_DATA/<name>`` and ``~/.cache/minigrad/<name>``.
``download=True`` fetches MNIST, Fashion-MNIST or CIFAR-10 from their
publishers when they are not found. MNIST alone has a fallback: with
neither ``data_dir`` nor ``download`` and no copy found, the 10,000 + 2,000
image sample bundled with minigrad is used (``sample=None``, the default),
and the dataset says so in ``is_sample``; ``sample=True`` asks for it.
"""
import os

import numpy as np

from minigrad import data
from minigrad.data import find

SPLITS = ("train", "test")


NAMES = ("mnist", "fashion-mnist", "cifar10", "dogs-vs-cats", "synthetic")
DOWNLOADABLE = ("mnist", "fashion-mnist", "cifar10")


def load(name, split, data_dir=None, image_size=None, download=False, sample=None):
    try:
        return _load(name, split, data_dir, image_size, download, sample)
    except FileNotFoundError as error:
        raise FileNotFoundError(in_option_terms(str(error))) from error


def in_option_terms(message):
    """A loader's "could not find" message with its remedy said in the scripts' options, not in arguments.

    The library says "pass download=True ... root="; a user of the scripts types
    ``--download`` and ``--data-dir``. Other messages are left as they are.
    """
    head, found, _ = message.partition("To get them: ")
    if not found:
        return message
    return (f"{head}To get them: pass --data-dir FOLDER, a folder that holds the files (or set MINIGRAD_DATA "
            "to a folder holding the data set's folder); train.py also takes --download to fetch them.")


def _load(name, split, data_dir, image_size, download, sample):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if download and name not in DOWNLOADABLE:
        raise ValueError(f"{name} cannot be downloaded by minigrad (only {', '.join(DOWNLOADABLE)} can); "
                         "get its files by hand and pass --data-dir")
    train = split == "train"
    if name == "mnist":
        if sample:
            return data.MNIST.sample(train=train)
        try:
            return data.MNIST(data_dir, train=train, download=download)
        except FileNotFoundError:
            if sample is None and data_dir is None and not download:
                return data.MNIST.sample(train=train)
            raise
    if name == "fashion-mnist":
        return data.FashionMNIST(data_dir, train=train, download=download)
    if name == "cifar10":
        return data.CIFAR10(data_dir, train=train, download=download)
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


def input_shape(name, image_size=None):
    """The (C, H, W) of the images a model trained on data set ``name`` takes; None for non-image data."""
    return {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32),
            "dogs-vs-cats": (3, image_size or 224, image_size or 224)}.get(name)


def read_image(path, name, shape):
    """An image file as the training data of ``name`` holds its images: float32 (C, H, W) in [0, 1].

    Converted to the training images' channels (grayscale for the MNISTs) and
    resized to their size with ImageFolder's nearest-neighbour rule, then
    scaled as that data set's loader scales: ``/ 255`` for the IDX and CIFAR
    files, ``* float32(1/255)`` for image folders (Keras' rescale).
    """
    from minigrad.data.imagefolder import read_pixels

    channels, height, width = shape
    pixels = read_pixels(path, (height, width), mode="L" if channels == 1 else "RGB").astype(np.float32)
    if name == "dogs-vs-cats":
        return pixels * np.float32(1 / 255)
    return pixels / np.float32(255)


def class_folder(folder, name, shape, classes):
    """The images of ``folder/<class>/...`` as a test set for a model with these ``classes``.

    Each subfolder must be one of the model's class names (a subset is fine:
    a folder of new cat photos alone); its images are read as ``read_image``
    reads one, and labelled with the model's index of that class.
    """
    from minigrad.data.imagefolder import _image_files

    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    unknown = [sub for sub in found if sub not in classes]
    if not found or unknown:
        raise ValueError(f"{folder}: expected one subfolder per class, named as the model's classes "
                         f"({', '.join(classes)}); found {', '.join(found) or 'no subfolders'}")
    files = [(path, classes.index(sub)) for sub in found for path in _image_files(os.path.join(folder, sub))]
    if not files:
        raise ValueError(f"{folder}: no image files in its class folders {', '.join(found)}")
    images = np.empty((len(files), *shape), dtype=np.float32)
    for i, (path, _) in enumerate(files):
        try:
            images[i] = read_image(path, name, shape)
        except (OSError, SyntaxError) as error:
            raise ValueError(f"cannot read the image {path}: {error}") from error
    dataset = data.TensorDataset(images, np.array([label for _, label in files], dtype=np.int64))
    dataset.classes, dataset.files = list(classes), [path for path, _ in files]
    return dataset


def is_class_folder(folder, classes):
    """Whether ``folder`` looks like ``<class>/<images>`` for these classes (rather than a data set's own layout)."""
    if not os.path.isdir(folder):
        return False
    subfolders = {entry.name for entry in os.scandir(folder) if entry.is_dir()}
    return bool(subfolders) and subfolders <= set(classes)
