"""DistributedSampler: each rank's share of a dataset's indices, for data-parallel training.

Every rank builds the same order of the indices (the same permutation, drawn
from ``seed + epoch``) and keeps every ``num_replicas``-th index of it,
starting at its rank: rank r gets positions r, r + R, r + 2 R, ... of the
order. The shards are disjoint, together they cover the dataset, and they
are equally long, so that every rank runs the same number of steps (a rank
with one step more would wait forever in its all-reduce). When the dataset
does not divide evenly, the order is padded by repeating its first indices
(a few examples are seen twice per epoch), or, with ``drop_last``, cut to a
multiple of ``num_replicas``. PyTorch's ``torch.utils.data.DistributedSampler``
does the same; its permutation comes from torch's generator, this one's from NumPy's.
"""
import math

import numpy as np


class DistributedSampler:
    """The indices of rank ``rank``'s shard of ``dataset``, for ``DataLoader(dataset, sampler=...)``.

    ``num_replicas`` and ``rank`` default to the process group's world size
    and rank. ``shuffle`` draws a new order each epoch: call
    ``set_epoch(epoch)`` before each epoch's loop, or every epoch repeats the
    first one's order. ``len(sampler)`` is the number of indices per rank.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from .. import distributed as dist
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive integer, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DistributedSampler: seed must be a non-negative integer, got {seed!r}")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        size = len(dataset)
        if drop_last and size % self.num_replicas:
            self.num_samples = math.ceil((size - self.num_replicas) / self.num_replicas)  # the remainder dropped
        else:
            self.num_samples = math.ceil(size / self.num_replicas)  # padded up
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        size = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(size)
        else:
            order = np.arange(size)
        # padding repeats the order from its start, as often as needed; drop_last cuts it instead
        order = np.resize(order, self.total_size) if size else order[:0]
        return iter(order[self.rank:self.total_size:self.num_replicas].tolist())

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Use the order of epoch ``epoch`` (seed + epoch) from the next iteration on, on every rank alike."""
        self.epoch = int(epoch)
