"""Dataset, TensorDataset and DataLoader: the PyTorch trio, yielding batches of NumPy arrays.

A ``Dataset`` is anything with ``len(dataset)`` and ``dataset[i]``. A
``DataLoader`` cuts a dataset into batches, in order or shuffled, and yields
each batch as a tuple of arrays (images float32, labels int64 for the
built-in datasets); the training loop wraps them with ``mg.tensor(...)``.

Loading must never dominate a training step. Datasets that hold their data as
whole arrays (``TensorDataset`` and the built-in MNIST, CIFAR10, ImageFolder,
which are TensorDatasets) expose them as ``dataset.arrays``, and the loader
takes a batch with one fancy-index per array, ``images[indices]``: tens of
microseconds for 64 MNIST images. Any other Dataset works too, more slowly:
its items are fetched one by one and stacked.

Keras' ``model.fit(x, y, batch_size=64, shuffle=True)`` does the same cutting
inside ``fit``; here it is a separate object, as in ``torch.utils.data``.
"""
import numpy as np

from ..tensor import Tensor


class Dataset:
    """The interface: ``len(dataset)`` items, ``dataset[i]`` the i-th (usually ``(x, y)``)."""

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Arrays (or Tensors) of equal length along axis 0; item ``i`` is ``(a[i], b[i], ...)``.

    Tensors are stored as their arrays (NumPy, or CuPy for a tensor on the
    GPU), so batches come out as arrays of the same kind. ``arrays`` is the
    tuple of whole arrays, which ``DataLoader`` indexes a batch at a time.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        arrays = tuple(a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays)
        if any(a.ndim == 0 for a in arrays):
            raise ValueError(f"TensorDataset: every array needs an axis 0 to index, "
                             f"got shapes {[a.shape for a in arrays]}")
        if len({len(a) for a in arrays}) > 1:
            raise ValueError(f"TensorDataset: arrays have different lengths along axis 0: "
                             f"{[len(a) for a in arrays]}")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` items, a tuple of arrays per batch.

    ``shuffle=True`` draws a new order each epoch (each ``for`` loop over the
    loader) from ``self.generator``, a ``numpy.random.Generator`` seeded once
    with ``seed``: the same seed gives the same sequence of epochs. The last
    batch is smaller when ``len(dataset)`` is not a multiple of
    ``batch_size``, unless ``drop_last=True`` drops it. ``len(loader)`` is the
    number of batches per epoch.

    ``sampler`` (a ``DistributedSampler``, or any iterable of indices with a
    ``len``) gives the order instead, and then ``len(sampler)`` items make
    an epoch; it shuffles by itself, so ``shuffle=True`` with it is an error.

    To resume a run bit-exactly, save ``loader.state_dict()`` with the model's
    checkpoint and call ``loader.load_state_dict(state)`` after restarting.
    The state is the generator's state at the start of the epoch in progress
    and the number of that epoch's batches already yielded, so a resumed loop
    replays the interrupted epoch's order and skips what was done, mid-epoch
    or between epochs alike. It describes the most recent ``for`` loop over
    the loader.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, sampler=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__, "
                            f"got {type(dataset).__name__}")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle (DataLoader: the sampler "
                             "decides the order; a DistributedSampler shuffles itself, given set_epoch)")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = np.random.default_rng(seed)
        self._epoch_start = None   # generator state before the current epoch's shuffle
        self._batches_done = 0     # batches of the current epoch already yielded
        self._skip = 0             # batches to skip on the next epoch (set by load_state_dict)

    def __len__(self):
        items = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.drop_last:
            return items // self.batch_size
        return -(-items // self.batch_size)

    def __iter__(self):
        self._epoch_start = self.generator.bit_generator.state
        skip, self._skip = self._skip, 0
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64, count=len(self.sampler))
        else:
            n = len(self.dataset)
            order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        for batch in range(skip, len(self)):
            self._batches_done = batch + 1
            yield self._fetch(order[batch * self.batch_size:(batch + 1) * self.batch_size])

    def _fetch(self, indices):
        """One batch: a fancy-index per array if the dataset has them, else its items stacked."""
        arrays = getattr(self.dataset, "arrays", None)
        if arrays is not None:
            return tuple(a[indices] for a in arrays)
        items = [self.dataset[int(i)] for i in indices]
        if isinstance(items[0], tuple):
            return tuple(np.stack(column) for column in zip(*items))
        return np.stack(items)

    def state_dict(self):
        """What to save to resume exactly: ``{"generator": <bit generator state>, "batches_done": int}``."""
        if self._epoch_start is not None and self._batches_done < len(self):
            return {"generator": self._epoch_start, "batches_done": self._batches_done}
        return {"generator": self.generator.bit_generator.state, "batches_done": self._skip}

    def load_state_dict(self, state):
        """Restore a ``state_dict()``: the next ``for`` loop continues where the saved one stopped."""
        if not isinstance(state, dict) or set(state) != {"generator", "batches_done"}:
            raise ValueError(f"DataLoader.load_state_dict: expected a dict with keys 'generator' and "
                             f"'batches_done' (from state_dict()), got {state!r:.200}")
        if not 0 <= state["batches_done"] <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: batches_done={state['batches_done']} but an "
                             f"epoch has {len(self)} batches")
        self.generator.bit_generator.state = state["generator"]
        self._epoch_start = None
        self._batches_done = 0
        self._skip = int(state["batches_done"])
