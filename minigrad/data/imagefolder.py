"""ImageFolder: a folder per class of JPEG/PNG files, decoded once into one array.

The layout is the one Keras' ``ImageDataGenerator.flow_from_directory`` and
torchvision's ``ImageFolder`` read::

    root/cats/cat.1.jpg
    root/cats/cat.2.jpg
    root/dogs/dog.1.jpg

Each subfolder of ``root`` is a class (sorted by name: label 0 is the first
name); its images are found recursively and taken in sorted order, like
Keras. Every image is opened with Pillow, converted to RGB and resized to
``size`` with nearest-neighbour interpolation unless told otherwise: that is
the default of Keras' ``load_img`` and ``flow_from_directory``
(``interpolation='nearest'``), which the seed tutorials use. Pixels are then
scaled to [0, 1] as ``flow_from_directory(rescale=1/255)`` does (multiplied by
float32 1/255, so values match Keras' bit for bit).

All images are decoded at construction into one float32 array
(N, 3, H, W): 2,000 images at 224x224 take 1.2 GB, and the DataLoader then
takes a batch with one fancy-index instead of decoding JPEGs every step.
Files that Pillow cannot read are skipped and named in one warning; anything
else wrong (no such folder, no class folders, a class folder without images
or whose images all fail, a bad ``size``) raises. Pillow is imported only
here, so ``import minigrad`` does not need it.
"""
import os
import warnings

import numpy as np

from .dataset import TensorDataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")  # Keras' white list


class ImageFolder(TensorDataset):
    """Images float32 (N, 3, H, W) in [0, 1] and labels int64 (N,) from ``root/<class>/<image>`` files.

    ``size`` is ``(height, width)``, as Keras' ``target_size``.
    ``interpolation`` is ``"nearest"`` (Keras' default) or any Pillow
    resampling name (``"bilinear"``, ``"bicubic"``, ...). ``classes`` are the
    subfolder names (hidden ones, like ``.ipynb_checkpoints``, are ignored),
    ``files`` the paths of the images kept, in order. ``mode="L"`` reads
    grayscale images instead, (N, 1, H, W).
    """

    def __init__(self, root, size=(224, 224), interpolation="nearest", mode="RGB"):
        from PIL import Image

        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: no such folder {root}")
        _check_options(size, interpolation, mode)
        self.classes = sorted(entry.name for entry in os.scandir(root)
                              if entry.is_dir() and not entry.name.startswith("."))
        if not self.classes:
            raise ValueError(f"ImageFolder: {root} has no subfolders; expected one folder of images per class")
        # An empty class folder would still count as a class, one without examples, and move
        # every later class's label by one against a copy of the data without it (a model
        # trained on one and evaluated on the other). torchvision refuses it too.
        files_per_class = [_image_files(os.path.join(root, name)) for name in self.classes]
        empty = [os.path.join(root, name) for name, files in zip(self.classes, files_per_class) if not files]
        if empty:
            raise FileNotFoundError(f"ImageFolder: found no image files ({', '.join(EXTENSIONS)}) in the class "
                                    f"folder(s) {', '.join(empty)}; every subfolder of {root} is a class: "
                                    "add images to it or remove it")
        candidates = [(path, label) for label, files in enumerate(files_per_class) for path in files]

        images = np.empty((len(candidates), len(mode), int(size[0]), int(size[1])), dtype=np.float32)
        kept, labels, skipped = [], [], []
        for path, label in candidates:
            try:
                images[len(kept)] = read_pixels(path, size, interpolation, mode)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                skipped.append(f"{path} ({error})")
                continue
            kept.append(path)
            labels.append(label)
        if skipped:
            warnings.warn(f"ImageFolder: skipped {len(skipped)} unreadable image(s) in {root}: "
                          + "; ".join(skipped), stacklevel=2)
        if not kept:
            raise ValueError(f"ImageFolder: none of the {len(candidates)} images in {root} could be read")
        present = set(labels)
        unread = [os.path.join(root, name) for label, name in enumerate(self.classes) if label not in present]
        if unread:
            raise ValueError(f"ImageFolder: none of the images in the class folder(s) {', '.join(unread)} "
                             "could be read, so the class would have no examples")
        self.images = images[:len(kept)]
        self.images *= np.float32(1 / 255)
        self.labels = np.array(labels, dtype=np.int64)
        self.files = kept
        super().__init__(self.images, self.labels)


def read_pixels(path, size, interpolation="nearest", mode="RGB"):
    """One image file as uint8 (C, H, W): converted to ``mode``, resized to ``size`` as ImageFolder does.

    Pillow's errors on a file it cannot read (OSError and its kin) pass through.
    """
    from PIL import Image

    _check_options(size, interpolation, mode)
    height, width = int(size[0]), int(size[1])
    with Image.open(path) as image:
        image = image.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), getattr(Image.Resampling, interpolation.upper()))
        pixels = np.asarray(image)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _check_options(size, interpolation, mode):
    from PIL import Image

    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"ImageFolder: size must be (height, width), two positive integers, got {size!r}")
    if not isinstance(interpolation, str) or getattr(Image.Resampling, interpolation.upper(), None) is None:
        raise ValueError(f"ImageFolder: unknown interpolation {interpolation!r}; use 'nearest', 'bilinear', "
                         f"'bicubic', 'lanczos', 'box' or 'hamming'")
    if mode not in ("RGB", "L"):
        raise ValueError(f"ImageFolder: mode must be 'RGB' (3 channels) or 'L' (grayscale), got {mode!r}")


def _image_files(folder):
    """The image files under ``folder``, recursively: by sorted folder, then sorted name, as Keras orders them."""
    found = []
    for directory, subfolders, files in os.walk(folder):
        subfolders.sort()
        found.extend(os.path.join(directory, file) for file in sorted(files) if file.lower().endswith(EXTENSIONS))
    return found
