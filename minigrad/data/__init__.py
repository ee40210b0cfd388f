"""mg.data: datasets and the DataLoader that batches them (``torch.utils.data`` and ``torchvision.datasets``).

- ``dataset.py``: Dataset, TensorDataset, DataLoader (batches of NumPy arrays).
- ``mnist.py``: MNIST, FashionMNIST from the IDX files; ``cifar.py``: CIFAR10
  from the python batches; ``imagefolder.py``: ImageFolder, a folder per class.
- ``transforms.py``: Compose, Normalize, RandomCrop, RandomHorizontalFlip on batches.
- ``sampler.py``: DistributedSampler, each rank's share of a data set.
- ``find.py``: where datasets are looked for (``root``, ``$MINIGRAD_DATA``,
  ``~/.cache/minigrad``), and checksummed downloads.
"""
from .dataset import DataLoader, Dataset, TensorDataset
from .sampler import DistributedSampler
from .mnist import MNIST, FashionMNIST
from .cifar import CIFAR10
from .imagefolder import ImageFolder
from . import transforms

__all__ = ["Dataset", "TensorDataset", "DataLoader", "DistributedSampler", "MNIST", "FashionMNIST", "CIFAR10",
           "ImageFolder"]
