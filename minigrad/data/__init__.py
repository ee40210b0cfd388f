"""mg.data: datasets and the DataLoader that batches them (``torch.utils.data`` and ``torchvision.datasets``).

- ``dataset.py``: Dataset, TensorDataset, DataLoader (batches of NumPy arrays).
- ``mnist.py``: MNIST, FashionMNIST from the IDX files; ``cifar.py``: CIFAR10
  from the python batches; ``imagefolder.py``: ImageFolder, a folder per class.
- ``find.py``: where datasets are looked for (``root``, ``$MINIGRAD_DATA``,
  ``~/.cache/minigrad``), and checksummed downloads.
"""
from .dataset import DataLoader, Dataset, TensorDataset
from .mnist import MNIST, FashionMNIST
from .cifar import CIFAR10
from .imagefolder import ImageFolder

__all__ = ["Dataset", "TensorDataset", "DataLoader", "MNIST", "FashionMNIST", "CIFAR10", "ImageFolder"]
