"""MNIST and Fashion-MNIST, read from their publishers' IDX files (gzipped or not).

The IDX format (LeCun's, http://yann.lecun.com/exdb/mnist/) is a header and a
C-order array, all big-endian::

    bytes 0-1   0x00 0x00
    byte  2     the element type: 0x08 uint8, 0x09 int8, 0x0B int16,
                0x0C int32, 0x0D float32, 0x0E float64
    byte  3     the number of dimensions, d
    4 * d       each dimension's size, an unsigned 32-bit integer
    the rest    the elements

MNIST's ``train-images-idx3-ubyte`` is ``00 00 08 03``, then N, 28, 28, then
N*784 pixels (0 background, 255 ink); ``train-labels-idx1-ubyte`` is
``00 00 08 01``, N, then N digits. Fashion-MNIST uses the same files and
names. The counts are read from the headers, never assumed (the project's
shared MNIST training set is a 14,262-image prefix of the official 60,000).

Images come out as float32 (N, 1, 28, 28) in [0, 1] (``pixels / 255``, what
``transforms.ToTensor()`` and the Keras tutorials' ``x / 255`` give), labels
as int64 (N,).

The package ships a small real sample, the first 10,000 training and 2,000
test digits of the official files (``samples/mnist/``, its README says how it
was made): ``MNIST.sample()`` loads it with no download and no data folder.
"""
import contextlib
import gzip
import math
import os
import zlib

import numpy as np

from . import find
from .dataset import TensorDataset

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Deflate's greatest possible compression ratio: a gzip file of n bytes unpacks to at most about 1032 n.
MAX_DEFLATE_RATIO = 1032


def read_idx(path):
    """The array in the IDX file ``path`` (gunzipped first if the name ends in ``.gz``).

    The sizes in the header are checked against the bytes the file holds
    before the array is allocated, so a damaged header cannot ask for
    terabytes: a plain file must hold exactly the data its header describes,
    and a gzipped one cannot hold more than deflate's best ratio allows.
    """
    gzipped = os.fspath(path).endswith(".gz")
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        with _gunzip_errors(path, gzipped), (gzip.GzipFile(fileobj=file) if gzipped else file) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0:2] != b"\0\0" or magic[2] not in IDX_TYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic number {magic.hex(' ')}; "
                                 f"expected 00 00, a type code, a dimension count)")
            dtype, ndim = np.dtype(IDX_TYPES[magic[2]]), magic[3]
            sizes = f.read(4 * ndim)
            if len(sizes) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header ({4 + len(sizes)} bytes for {ndim} dimensions)")
            shape = tuple(int.from_bytes(sizes[4 * i:4 * i + 4], "big") for i in range(ndim))
            expected = math.prod(shape) * dtype.itemsize  # Python ints: exact, however large
            if expected >= 2 ** 63:
                raise ValueError(f"{path}: the header says shape {shape}, {expected} bytes of data, "
                                 "which overflows 64 bits (corrupt header)")
            if not gzipped and file_size - 4 - 4 * ndim != expected:
                raise _size_mismatch(path, shape, expected, file_size - 4 - 4 * ndim)
            if gzipped and expected > MAX_DEFLATE_RATIO * file_size:
                raise ValueError(f"{path}: the header says shape {shape} ({expected} bytes of data), more than "
                                 f"a gzip file of {file_size} bytes can hold (corrupt header)")
            array = np.empty(shape, dtype)
            found = _read_into(f, memoryview(array.reshape(-1).view(np.uint8)))
            extra = f.read(1) if found == expected else b""
    if found != expected or extra:
        raise _size_mismatch(path, shape, expected, f"more than {expected}" if extra else found)
    return array


def _size_mismatch(path, shape, expected, found):
    return ValueError(f"{path}: the header says shape {shape} ({expected} bytes of data) "
                     f"but the file holds {found} bytes of data (truncated or corrupt)")


def _read_into(f, buffer):
    """Fill ``buffer`` from ``f`` as far as the file goes; the number of bytes read."""
    done = 0
    while done < len(buffer):
        count = f.readinto(buffer[done:])
        if not count:
            break
        done += count
    return done


@contextlib.contextmanager
def _gunzip_errors(path, gzipped):
    """Name the file in what gzip raises on a damaged one (BadGzipFile, EOFError, zlib.error)."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as error:
        if not gzipped:
            raise
        raise ValueError(f"{path}: not a valid gzip file ({error})") from error


class MNIST(TensorDataset):
    """The MNIST digits: ``images`` float32 (N, 1, 28, 28) in [0, 1], ``labels`` int64 (N,).

    ``root`` is the folder holding the IDX files or its parent; without it
    the files are looked for as ``find`` describes. ``train`` picks
    ``train-*`` (else ``t10k-*``). ``download=True`` fetches the files when
    they are not found. Item ``i`` is ``(image, label)``; ``classes`` names
    the labels. Keras: ``keras.datasets.mnist.load_data()``.
    ``MNIST.sample(train)`` is the bundled 10,000 + 2,000 image sample
    (``is_sample`` is True there, False for the full data).
    """

    name = "mnist"
    # The bundled sample, inside the installed package (package data in pyproject.toml).
    SAMPLE_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples", "mnist")
    is_sample = False
    classes = [str(digit) for digit in range(10)]
    url = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    md5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
           "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
           "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
           "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    system_places = ()
    how_to_get = ("pass download=True to fetch them into ~/.cache/minigrad/{name} (or into "
                  "root/{name} if root is given), or put the IDX files in a folder and pass it as "
                  "root=, or set MINIGRAD_DATA to a folder holding {name}/.")

    def __init__(self, root=None, train=True, download=False):
        prefix = "train" if train else "t10k"
        files = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        dataset = type(self).__name__
        folder = find.locate(dataset, self.name, missing=lambda folder: self._missing(folder, files),
                             root=root, system_places=self.system_places,
                             download=(lambda folder: self._download(folder, files)) if download else None,
                             how_to_get=self.how_to_get.format(name=self.name))
        images_path, labels_path = (self._path(folder, file) for file in files)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{images_path}: expected uint8 images (N, rows, columns), "
                             f"got {images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{dataset}: {images_path} has {len(images)} images but "
                             f"{labels_path} has {len(labels)} labels")
        if labels.size and labels.max() >= len(self.classes):
            raise ValueError(f"{labels_path}: label {labels.max()} is not a class index "
                             f"0..{len(self.classes) - 1}")
        self.images = images[:, None].astype(np.float32)
        self.images /= np.float32(255)
        self.labels = labels.astype(np.int64)
        self.folder = folder
        super().__init__(self.images, self.labels)

    @classmethod
    def sample(cls, train=True):
        """The sample bundled with minigrad: the first 10,000 training (or 2,000 test) images of the official files.

        Enough to train and check a small network offline; the counts come
        from the files' headers as for the full data.
        """
        if cls.SAMPLE_FOLDER is None:
            raise FileNotFoundError(f"{cls.__name__}.sample(): minigrad bundles no sample of {cls.name} "
                                    f"(only MNIST ships one). To get the data: "
                                    + cls.how_to_get.format(name=cls.name))
        prefix = "train" if train else "t10k"
        lacking = cls._missing(cls.SAMPLE_FOLDER, [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"])
        if lacking:
            raise FileNotFoundError(f"{cls.__name__}.sample(): the bundled sample in {cls.SAMPLE_FOLDER} lacks "
                                    f"{', '.join(lacking)}; the installation is incomplete (reinstall minigrad, "
                                    f"whose package data includes samples/mnist/*.gz)")
        dataset = cls(root=cls.SAMPLE_FOLDER, train=train)
        dataset.is_sample = True
        return dataset

    @staticmethod
    def _path(folder, file):
        """``folder/file``, or ``folder/file.gz`` when only the gzipped file is there."""
        path = os.path.join(folder, file)
        return path if os.path.isfile(path) else path + ".gz"

    @staticmethod
    def _missing(folder, files):
        return [f"{file}[.gz]" for file in files
                if not any(os.path.isfile(os.path.join(folder, file + ending)) for ending in ("", ".gz"))]

    def _download(self, folder, files):
        for file in self._missing(folder, files):
            file = file.replace("[.gz]", ".gz")
            find.download(self.url + file, os.path.join(folder, file), self.md5[file])


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: MNIST's format and shapes, ten kinds of clothing.

    Also found where the Debian package ``dataset-fashion-mnist`` installs it.
    Keras: ``keras.datasets.fashion_mnist.load_data()``.
    """

    name = "fashion-mnist"
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    md5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
           "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
           "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
           "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    system_places = ("/usr/share/datasets/fashion-mnist",)
    SAMPLE_FOLDER = None  # no Fashion-MNIST sample is bundled: FashionMNIST.sample() says so
    how_to_get = ("install the Debian package (apt-get install dataset-fashion-mnist, into "
                  "/usr/share/datasets/fashion-mnist), or " + MNIST.how_to_get)
