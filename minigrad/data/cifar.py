"""CIFAR-10, read from its publisher's "python version" batches.

``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html)
unpacks to a folder ``cifar-10-batches-py`` of pickles written by Python 2:

- ``data_batch_1`` ... ``data_batch_5`` (training) and ``test_batch``, each a
  dict ``{b'data': uint8 array (n, 3072), b'labels': [n ints 0-9],
  b'batch_label': bytes, b'filenames': [n bytes]}``; a row of ``data`` is one
  32x32 image, its 1024 red values, then 1024 green, then 1024 blue, each
  plane row by row, so ``data.reshape(n, 3, 32, 32)`` is the NCHW layout;
- ``batches.meta``, ``{b'label_names': [10 bytes], ...}``.

Python 3 reads them with ``pickle.load(f, encoding='bytes')``. The counts
come from the files (the project's shared copy holds 932 images per batch).
Images come out as float32 (N, 3, 32, 32) in [0, 1], labels int64 (N,).
"""
import codecs
import os
import pickle

import numpy as np

from . import find
from .dataset import TensorDataset

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"

# The only globals a CIFAR pickle refers to: NumPy's array reconstruction
# functions (under their NumPy 1 and NumPy 2 module names; an array's own
# __reduce_ex__ hands them over without importing a private module), and the
# codec with which Python 3's protocol-2 pickles store bytes.
_reconstruct = np.empty(0).__reduce_ex__(2)[0]  # protocols 0-4
_frombuffer = np.empty(0).__reduce_ex__(5)[0]   # protocol 5
SAFE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy.core.numeric", "_frombuffer"): _frombuffer,
                ("numpy._core.numeric", "_frombuffer"): _frombuffer,
                ("numpy", "ndarray"): np.ndarray,
                ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only containers, strings, numbers and NumPy arrays.

    Unpickling calls whatever function the file names, so a plain
    ``pickle.load`` of a file from the internet or a shared folder can run
    any code (``os.system`` is one name away). Refusing every global outside
    ``SAFE_GLOBALS`` keeps the official files loading and makes a hostile one
    fail with an UnpicklingError instead.
    """

    def find_class(self, module, name):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays are allowed)")
        return SAFE_GLOBALS[(module, name)]


def read_batch(path, keys):
    """The dict pickled in ``path``, checked to have ``keys``; ValueError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            batch = SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{path}: not a readable CIFAR python batch ({type(error).__name__}: {error})") from error
    if not isinstance(batch, dict) or not all(key in batch for key in keys):
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{path}: expected a dict with keys {keys}, found {found}")
    return batch


def read_images(path):
    """``(images uint8 (n, 3, 32, 32), labels int64 (n,))`` from one data or test batch."""
    batch = read_batch(path, [b"data", b"labels"])
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' should be a uint8 array (n, 3072), got "
                         f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: {len(data)} images but b'labels' is {labels.dtype} {labels.shape}, "
                         f"expected {len(data)} integers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels should be 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


class CIFAR10(TensorDataset):
    """CIFAR-10: ``images`` float32 (N, 3, 32, 32) in [0, 1], ``labels`` int64 (N,), ``classes`` names.

    ``root`` is the ``cifar-10-batches-py`` folder or its parent; without it
    the folder is looked for as ``find`` describes. ``train`` picks the five
    data batches, concatenated in order (else ``test_batch``).
    ``download=True`` fetches and unpacks the official tarball when the files
    are not found. Keras: ``keras.datasets.cifar10.load_data()`` (NHWC there).
    """

    name = "cifar-10-batches-py"

    def __init__(self, root=None, train=True, download=False):
        files = (TRAIN_FILES if train else TEST_FILES) + [META_FILE]
        how_to_get = (f"pass download=True to fetch {URL} and unpack it into ~/.cache/minigrad/{self.name} "
                      f"(or root/{self.name} if root is given), or pass root= the folder holding the batches "
                      f"or its parent, or set MINIGRAD_DATA to a folder holding {self.name}/.")
        def missing(folder):
            return [file for file in files if not os.path.isfile(os.path.join(folder, file))]

        folder = find.locate("CIFAR10", self.name, missing, root=root, how_to_get=how_to_get,
                             download=self._download if download else None)
        meta_path = os.path.join(folder, META_FILE)
        names = read_batch(meta_path, [b"label_names"])[b"label_names"]
        if not isinstance(names, list) or len(names) != 10:
            raise ValueError(f"{meta_path}: b'label_names' should list 10 names, got {names!r:.200}")
        self.classes = [name.decode() if isinstance(name, bytes) else str(name) for name in names]
        parts = [read_images(os.path.join(folder, file)) for file in files[:-1]]
        self.images = np.concatenate([images for images, _ in parts]).astype(np.float32)
        self.images /= np.float32(255)
        self.labels = np.concatenate([labels for _, labels in parts])
        self.folder = folder
        super().__init__(self.images, self.labels)

    @staticmethod
    def _download(folder):
        """Fetch the tarball next to ``folder``, check it, unpack ``cifar-10-batches-py/`` there, delete it."""
        parent = os.path.dirname(folder)
        archive = os.path.join(parent, "cifar-10-python.tar.gz")
        find.download(URL, archive, MD5)
        try:
            find.extract_tar(archive, parent, CIFAR10.name)
        finally:
            os.remove(archive)
