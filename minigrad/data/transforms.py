"""Transforms of a batch of images, with torchvision's names: ``Compose``, ``Normalize``, ``RandomCrop``, ``RandomHorizontalFlip``.

torchvision transforms one image at a time; these take a whole batch, an
(N, C, H, W) NumPy array, because a batch is what the DataLoader hands the
training loop, and one NumPy operation on the batch is far cheaper than N
small ones. The random ones draw from a ``numpy.random.Generator`` given when
they are made, so a checkpoint can save its state and a resumed run draws the
same shifts and flips (``transform.generator.bit_generator.state``).
"""
import numpy as np


class Compose:
    """Apply ``transforms`` one after another, as torchvision's ``Compose``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, images):
        for transform in self.transforms:
            images = transform(images)
        return images

    def __repr__(self):
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class Normalize:
    """(images - mean) / std per channel: ``mean`` and ``std`` are (C,) (or scalars), as torchvision's."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def __call__(self, images):
        shape = (1, -1) + (1,) * (images.ndim - 2) if self.mean.ndim else ()
        return (images - self.mean.reshape(shape)) / self.std.reshape(shape)

    @classmethod
    def fit(cls, images):
        """The per-channel mean and standard deviation of a set of (N, C, ...) images."""
        axes = (0,) + tuple(range(2, images.ndim))
        return cls(images.mean(axis=axes), images.std(axis=axes))

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Pad each image by ``padding`` pixels of zeros, then cut out its original size at a random offset.

    With the image size kept, this is a random shift by up to ``padding``
    pixels in each direction, zeros filling in; each image gets its own offset.
    """

    def __init__(self, padding, generator=None):
        if not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be a non-negative integer, got {padding!r}")
        self.padding = int(padding)
        self.generator = generator if generator is not None else np.random.default_rng()

    def __call__(self, images):
        n, c, h, w = images.shape
        p = self.padding
        padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
        dy, dx = self.generator.integers(0, 2 * p + 1, size=(2, n))
        rows = (dy[:, None] + np.arange(h))[:, None, :, None]
        cols = (dx[:, None] + np.arange(w))[:, None, None, :]
        return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]

    def __repr__(self):
        return f"RandomCrop(padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left to right with probability ``p``."""

    def __init__(self, p=0.5, generator=None):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p!r}")
        self.p = p
        self.generator = generator if generator is not None else np.random.default_rng()

    def __call__(self, images):
        images = images.copy()
        mirrored = self.generator.random(len(images)) < self.p
        images[mirrored] = images[mirrored, ..., ::-1]
        return images

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"
