"""One rank of a distributed test: ``mpiexec -n 2 python tests/distributed_worker.py CASE OUTFILE``.

Each rank writes what it found to ``OUTFILE.<rank>.json``; tests/test_distributed.py
starts the ranks and checks the files. The cases:

- ``collectives``: all_reduce with every op, broadcast, barrier, all_gather_object;
- ``train``: DDP + SyncBatchNorm for 3 steps against one process on the global
  batch; per-rank BatchNorm against its formulas;
- ``raise``: rank 1 raises while rank 0 waits in an all-reduce (the run must end at once).
"""
import json
import sys

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn.functional as F
from minigrad import nn

PER_RANK_BATCH, STEPS = 4, 3


def collectives(rank, world):
    found = {}
    base = np.array([rank + 1.0, -2.0 * rank, 3.0 + rank])
    for op in ("sum", "avg", "max", "min", "product"):
        t = mg.tensor(base.copy())
        dist.all_reduce(t, op=op)
        found[op] = t.numpy().tolist()
    counts = mg.tensor(np.array([rank, 10], dtype=np.int64))
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    found["int64_sum"] = counts.numpy().tolist()
    scalar = mg.tensor(np.array(rank + 0.5))
    dist.all_reduce(scalar, op="max")
    found["scalar_max"] = scalar.item()
    strided = np.arange(6.0).reshape(2, 3) * (rank + 1)
    view = mg.tensor(strided).T  # a non-contiguous array: reduced through a contiguous copy
    dist.all_reduce(view.detach())
    found["transposed_sum"] = view.numpy().tolist()
    found["broadcast_from_1"] = None
    if world > 1:
        t = mg.tensor(np.full(3, float(rank)))
        dist.broadcast(t, src=1)
        found["broadcast_from_1"] = t.numpy().tolist()
    dist.barrier()
    gathered = [None] * world
    dist.all_gather_object(gathered, {"rank": rank})
    found["gathered"] = gathered
    try:  # every rank sees the difference, so every rank raises: no rank is left waiting
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2 + rank))
        found["different_models"] = None
    except RuntimeError as error:
        found["different_models"] = str(error)
    found["local_rank"] = dist.get_local_rank()
    found["backend"] = dist.get_backend()
    return found


def small_model(seed, sync):
    """conv -> BN2d -> ReLU -> pool -> Linear -> BN1d -> ReLU -> Linear, in float64."""
    mg.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 3)).double()
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if sync else model


def global_batch(step, world):
    rng = np.random.default_rng(100 + step)
    images = rng.standard_normal((world * PER_RANK_BATCH, 2, 8, 8)) * 2 + 0.5
    labels = rng.integers(0, 3, world * PER_RANK_BATCH)
    return images, labels


def train(model, world, rank=None, steps=STEPS):
    """SGD with momentum on the global batch (rank None) or on rank ``rank``'s share of it; the losses."""
    optimizer = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(steps):
        images, labels = global_batch(step, world)
        if rank is not None:
            share = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
            images, labels = images[share], labels[share]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(mg.tensor(images)), mg.tensor(labels))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def largest_difference(model, reference):
    mine, theirs = model.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs), (list(mine), list(theirs))
    return max(float(np.abs(mine[key].numpy() - theirs[key].numpy()).max()) for key in mine)


def batch_norm_by_hand(z, mean, var, eps=1e-5):
    return (z - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps)


def per_rank_against_formulas(rank, world):
    """One forward of BatchNorm2d and SyncBatchNorm on this rank's activations, against their formulas."""
    images, _ = global_batch(0, world)
    activations = [None] * world
    z_local = images[rank * PER_RANK_BATCH:(rank + 1) * PER_RANK_BATCH, :, :, :]
    dist.all_gather_object(activations, z_local)
    z_global = np.concatenate(activations)
    local_mean, local_var = z_local.mean(axis=(0, 2, 3)), z_local.var(axis=(0, 2, 3))
    global_mean, global_var = z_global.mean(axis=(0, 2, 3)), z_global.var(axis=(0, 2, 3))
    per_rank, synced = nn.BatchNorm2d(2).double(), nn.SyncBatchNorm(2).double()
    out_per_rank = per_rank(mg.tensor(z_local)).numpy()
    out_synced = synced(mg.tensor(z_local)).numpy()
    m, n = z_local.size // 2, z_global.size // 2  # values per channel on this rank, on all ranks

    def gap(a, b):
        return float(np.abs(a - b).max())
    return {
        "per_rank_vs_local_formula": gap(out_per_rank, batch_norm_by_hand(z_local, local_mean, local_var)),
        "synced_vs_global_formula": gap(out_synced, batch_norm_by_hand(z_local, global_mean, global_var)),
        "per_rank_vs_synced": gap(out_per_rank, out_synced),
        "per_rank_running_var": gap(per_rank.running_var.numpy(), 0.9 + 0.1 * local_var * m / (m - 1)),
        "synced_running_var": gap(synced.running_var.numpy(), 0.9 + 0.1 * global_var * n / (n - 1)),
        "synced_running_mean": gap(synced.running_mean.numpy(), 0.1 * global_mean),
    }


def train_case(rank, world):
    found = {}
    reference = small_model(seed=0, sync=False)
    reference_losses = train(reference, world)
    for name, cap in (("one_bucket", 25), ("many_buckets", 0.0002)):
        # rank 1 starts from other weights: DDP must replace them with rank 0's
        model = nn.parallel.DistributedDataParallel(small_model(seed=rank, sync=True), bucket_cap_mb=cap)
        found[f"{name}_buckets"] = len(model._buckets())
        losses = train(model, world, rank)
        mean_losses = mg.tensor(np.array(losses))
        dist.all_reduce(mean_losses, op="avg")
        found[f"{name}_state"] = largest_difference(model.module, reference)
        found[f"{name}_losses"] = float(np.abs(mean_losses.numpy() - reference_losses).max())
    found["keys"] = list(model.state_dict())[:2]
    # per-rank BatchNorm + DDP is the average of W separate models, each on its share of the batch
    per_rank = nn.parallel.DistributedDataParallel(small_model(seed=0, sync=False))
    train(per_rank, world, rank, steps=1)
    gradients = {key: p.grad.numpy() for key, p in per_rank.module.named_parameters()}
    alone = []
    for r in range(world):
        single = small_model(seed=0, sync=False)
        train(single, world, r, steps=1)
        alone.append({key: p.grad.numpy() for key, p in single.named_parameters()})
    one_step = small_model(seed=0, sync=False)
    train(one_step, world, steps=1)
    found["per_rank_vs_average_of_shares"] = max(
        float(np.abs(gradients[key] - np.mean([a[key] for a in alone], axis=0)).max()) for key in gradients)
    found["per_rank_vs_global"] = max(
        float(np.abs(gradients[key] - p.grad.numpy()).max()) for key, p in one_step.named_parameters())
    found.update(per_rank_against_formulas(rank, world))
    return found


def raise_case(rank, world):
    if rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    t = mg.tensor(np.ones(3))
    dist.all_reduce(t)  # waits for rank 1, which never comes: only MPI_Abort ends this
    return {"unreachable": True}


def main():
    case, outfile = sys.argv[1], sys.argv[2]
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    found = {"collectives": collectives, "train": train_case, "raise": raise_case}[case](rank, world)
    found.update(rank=rank, world_size=world, mpi4py_loaded="mpi4py" in sys.modules)
    with open(f"{outfile}.{rank}.json", "w") as file:
        json.dump(found, file)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
