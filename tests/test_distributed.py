"""minigrad.distributed, DistributedDataParallel, SyncBatchNorm, DistributedSampler.

Two kinds of test. The ones with two ranks start ``mpiexec -n 2 python
tests/distributed_worker.py CASE OUT`` as a subprocess and read what each
rank wrote (skipped without mpi4py or mpiexec). The others run in this
process, in a process group of one (no mpiexec: no MPI is loaded), or need
no group at all (the sampler).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.nn.parallel import DistributedDataParallel
from minigrad.nn.sync_batchnorm import SyncBatchNormFunction
from oracle import check_grad, randn
import distributed_worker as worker

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
MPIEXEC = shutil.which("mpiexec")
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not (HAVE_MPI4PY and MPIEXEC),
                               reason="two ranks need mpi4py and mpiexec: pip install -e \".[distributed]\"")


def worker_environment():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MINIGRAD_NUM_THREADS="1", OMP_NUM_THREADS="1")
    for name in list(env):  # a test run under mpiexec must not pass its own rank on to the children
        if name.startswith(("OMPI_", "PMIX_", "PMI_", "PRTE_")):
            del env[name]
    return env


def mpiexec(ranks):
    """mpiexec -n ranks, with Open MPI's flags to run as root and on more ranks than cores."""
    command = [MPIEXEC, "-n", str(ranks)]
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version:
        command.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-run-as-root")
    return command


def run_ranks(case, tmp_path, ranks=2, timeout=60):
    """Start ``ranks`` workers on ``case``: (completed process, seconds, [each rank's findings])."""
    out = str(tmp_path / case)
    start = time.monotonic()
    done = subprocess.run(mpiexec(ranks) + [sys.executable, WORKER, case, out], capture_output=True,
                          text=True, timeout=timeout, env=worker_environment())
    seconds = time.monotonic() - start
    files = [f"{out}.{rank}.json" for rank in range(ranks)]
    findings = [json.load(open(file)) for file in files if os.path.exists(file)]
    return done, seconds, findings


@pytest.fixture(scope="module")
def two_rank_training(tmp_path_factory):
    done, _, findings = run_ranks("train", tmp_path_factory.mktemp("train"))
    assert done.returncode == 0, done.stdout + done.stderr
    return findings


# ----- two ranks ----------------------------------------------------------------------------------
@needs_mpi
def test_all_reduce_and_broadcast_on_two_ranks(tmp_path):
    done, _, findings = run_ranks("collectives", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [f["rank"] for f in findings] == [0, 1] and {f["world_size"] for f in findings} == {2}
    for found in findings:  # rank r held [r + 1, -2 r, 3 + r]
        assert found["sum"] == [3.0, -2.0, 7.0]
        assert found["avg"] == [1.5, -1.0, 3.5]
        assert found["max"] == [2.0, 0.0, 4.0]
        assert found["min"] == [1.0, -2.0, 3.0]
        assert found["product"] == [2.0, 0.0, 12.0]
        assert found["int64_sum"] == [1, 20]
        assert found["scalar_max"] == 1.5
        assert found["transposed_sum"] == (np.arange(6.0).reshape(2, 3) * 3).T.tolist()
        assert found["broadcast_from_1"] == [1.0, 1.0, 1.0]
        assert found["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert found["backend"] == "cpu:mpi,cuda:nccl"
        assert found["different_models"] == ("DistributedDataParallel: the ranks wrap different models: "
                                             "('weight', (2, 2), 'float32') on rank 0, "
                                             "('weight', (3, 2), 'float32') on rank 1")
    assert sorted(f["local_rank"] for f in findings) == [0, 1]  # both on this machine


@needs_mpi
def test_ddp_with_sync_batchnorm_on_two_ranks_ends_where_one_process_on_the_global_batch_ends(two_rank_training):
    """3 SGD steps, per-rank batch 4 against one process on 8, float64: every weight and running statistic."""
    for found in two_rank_training:
        assert found["one_bucket_buckets"] == 1 and found["many_buckets_buckets"] > 3
        for name in ("one_bucket", "many_buckets"):
            assert found[f"{name}_state"] < 1e-10  # rank 1 started from other weights: the broadcast fixed them
            assert found[f"{name}_losses"] < 1e-10  # the mean of the ranks' losses is the global batch's loss
        assert found["keys"] == ["module.0.weight", "module.0.bias"]


@needs_mpi
def test_per_rank_batchnorm_differs_from_the_global_batch_as_its_formulas_say(two_rank_training):
    for found in two_rank_training:
        # BatchNorm2d normalises with the rank's own mean and variance, SyncBatchNorm with the global ones
        assert found["per_rank_vs_local_formula"] < 1e-12
        assert found["synced_vs_global_formula"] < 1e-12
        assert found["per_rank_vs_synced"] > 1e-2
        assert found["per_rank_running_var"] < 1e-12  # 0.9 + 0.1 var_r m / (m - 1)
        assert found["synced_running_var"] < 1e-12    # 0.9 + 0.1 var N / (N - 1)
        assert found["synced_running_mean"] < 1e-12
        # with per-rank BatchNorm, DDP's gradient is the average of the shares' own gradients,
        # which is not the gradient of the global batch
        assert found["per_rank_vs_average_of_shares"] < 1e-12
        assert found["per_rank_vs_global"] > 1e-3


@needs_mpi
def test_a_rank_that_raises_stops_every_rank_at_once(tmp_path):
    done, seconds, findings = run_ranks("raise", tmp_path, timeout=60)
    assert done.returncode != 0 and findings == []
    assert "RuntimeError: rank 1 fails on purpose" in done.stderr
    assert "rank 1 of 2 stopped on RuntimeError; calling MPI_Abort" in done.stderr
    assert seconds < 30  # without the abort, rank 0 would wait in its all-reduce until the timeout


def test_a_script_started_without_mpiexec_is_a_group_of_one_without_mpi(tmp_path):
    out = str(tmp_path / "single")
    done = subprocess.run([sys.executable, WORKER, "collectives", out], capture_output=True, text=True,
                          timeout=60, env=worker_environment())
    assert done.returncode == 0, done.stderr
    found = json.load(open(out + ".0.json"))
    assert (found["rank"], found["world_size"], found["mpi4py_loaded"]) == (0, 1, False)
    assert found["sum"] == found["avg"] == found["max"] == [1.0, 0.0, 3.0]  # one rank's values, unchanged
    assert found["broadcast_from_1"] is None  # rank 1 does not exist


# ----- a process group of one, in this process ------------------------------------------------------
@pytest.fixture
def group_of_one():
    dist.init_process_group()
    yield
    dist.destroy_process_group()


def test_before_init_every_call_says_to_call_init_process_group():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier, dist.destroy_process_group,
                 lambda: dist.all_reduce(mg.ones(2)), lambda: dist.broadcast(mg.ones(2))):
        with pytest.raises(ValueError, match="Default process group has not been initialized"):
            call()
    with pytest.raises(RuntimeError, match="call minigrad.distributed.init_process_group"):
        DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="has not been initialized"):
        mg.data.DistributedSampler(list(range(4)))


def test_a_group_of_one(group_of_one):
    assert dist.is_initialized()
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    assert dist.get_backend() == "cpu:mpi,cuda:nccl"
    for op in dist.REDUCE_OPS:
        t = mg.tensor([1.5, -2.0])
        before = t._version
        dist.all_reduce(t, op=op)
        assert t.numpy().tolist() == [1.5, -2.0]
        assert t._version == before + 1  # changed in place, and counted as such
    dist.broadcast(t, src=0)
    dist.barrier()
    gathered = [None]
    dist.all_gather_object(gathered, {"a": 1})
    assert gathered == [{"a": 1}]


def test_init_errors():
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(RuntimeError, match="not started by mpiexec.*mpiexec -n 4 python"):
        dist.init_process_group(world_size=4)
    assert not dist.is_initialized()
    dist.init_process_group("mpi")
    try:
        with pytest.raises(RuntimeError, match="twice"):
            dist.init_process_group()
    finally:
        dist.destroy_process_group()


def test_under_mpiexec_without_mpi4py_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    with pytest.raises(RuntimeError, match=r'mpi4py is not installed: pip install -e "\.\[distributed\]"'):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_collective_errors(group_of_one):
    t = mg.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown op 'mean'.*'avg'"):
        dist.all_reduce(t, op="mean")
    with pytest.raises(TypeError, match="op 'avg' needs a floating-point tensor, got int64"):
        dist.all_reduce(mg.tensor([1, 2]), op="avg")
    with pytest.raises(ValueError, match="src must be a rank 0 .. 0, got 1"):
        dist.broadcast(t, src=1)
    with pytest.raises(TypeError, match="expected a minigrad Tensor, got ndarray"):
        dist.all_reduce(np.ones(2))
    with pytest.raises(ValueError, match="list of world_size=1 entries"):
        dist.all_gather_object([], 1)


def test_the_mpi_backend_refuses_a_cuda_tensor(standin):
    dist.init_process_group("mpi")
    try:
        with pytest.raises(RuntimeError, match="backend 'mpi' serves CPU tensors, this one is on cuda:0"):
            dist.all_reduce(mg.ones(2, device="cuda"))
    finally:
        dist.destroy_process_group()


def test_the_nccl_names_minigrad_calls_exist_in_cupy():
    """The NCCL path cannot run without GPUs; its names are checked against CuPy's real module."""
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed")
    probe = ("import cupy.cuda.nccl as n, sys; sys.exit(0 if n.available else 3)\n")
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, cwd=HERE).returncode == 3:
        pytest.skip("CuPy cannot load libnccl (pip install nvidia-nccl-cu12)")
    names = ["NcclCommunicator", "get_unique_id", "NCCL_SUM", "NCCL_PROD", "NCCL_MIN", "NCCL_MAX", "NCCL_AVG",
             "NCCL_FLOAT16", "NCCL_FLOAT32", "NCCL_FLOAT64", "NCCL_INT32", "NCCL_INT64", "NCCL_UINT8", "NCCL_INT8"]
    methods = ["allReduce", "bcast", "destroy"]
    check = (f"import cupy.cuda.nccl as n\nmissing = [m for m in {names} if not hasattr(n, m)] + "
             f"[m for m in {methods} if not hasattr(n.NcclCommunicator, m)]\nassert not missing, missing\n"
             "assert isinstance(n.get_unique_id(), bytes)\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=HERE)
    assert done.returncode == 0, done.stderr


# ----- DistributedDataParallel in a group of one ------------------------------------------------------------
def one_step_gradients(model, x, y):
    F.cross_entropy(model(mg.tensor(x)), mg.tensor(y)).backward()
    return [p.grad.numpy() for p in model.parameters()]


def test_ddp_in_a_group_of_one_is_the_model_itself(group_of_one):
    x, y = randn(6, 2, 8, 8), np.arange(6) % 3
    plain = worker.small_model(seed=0, sync=False)
    for cap in (25, 0.0002):
        wrapped = DistributedDataParallel(worker.small_model(seed=0, sync=True), bucket_cap_mb=cap)
        for mine, theirs in zip(one_step_gradients(wrapped, x, y), one_step_gradients(plain, x, y)):
            np.testing.assert_array_equal(mine, theirs)
        plain.zero_grad()
    assert all(isinstance(p, nn.Parameter) for p in wrapped.module.parameters())  # the views are gone again
    assert list(wrapped.state_dict()) == ["module." + key for key in plain.state_dict()]
    wrapped.load_state_dict(wrapped.state_dict())
    assert wrapped.eval() is wrapped and not wrapped.module[1].training
    with mg.no_grad():
        out = wrapped(mg.tensor(x))
    assert out.grad_fn is None
    assert repr(wrapped).startswith("DistributedDataParallel(\n  (module): Sequential(")


def test_ddp_shared_frozen_and_twice_used_parameters(group_of_one):
    layer = nn.Linear(3, 3).double()
    frozen = nn.Linear(3, 2).double()
    frozen.weight.requires_grad = False
    model = nn.Sequential(layer, nn.Tanh(), layer, frozen)  # one layer used twice
    wrapped = DistributedDataParallel(model)
    x = mg.tensor(randn(4, 3))
    model(x).sum().backward(retain_graph=False)
    expected = [p.grad.numpy().copy() for p in (layer.weight, layer.bias, frozen.bias)]
    model.zero_grad()
    out = wrapped(x).sum()
    out.backward(retain_graph=True)
    out.backward()  # a second backward through the same graph adds the same again
    for p, grad in zip((layer.weight, layer.bias, frozen.bias), expected):
        np.testing.assert_allclose(p.grad.numpy(), 2 * grad, rtol=1e-12)
    assert frozen.weight.grad is None


def test_ddp_views_share_their_parameters_version(group_of_one):
    model = DistributedDataParallel(nn.Linear(3, 2).double())
    loss = model(mg.tensor(randn(4, 3))).sum()
    with mg.no_grad():
        model.module.weight -= 0.1  # the weight the backward needs, changed in place
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_ddp_argument_errors(group_of_one):
    with pytest.raises(TypeError, match="expected an nn.Module to wrap, got function"):
        DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive, got 0"):
        DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0)
    with pytest.raises(ValueError, match=r"device_ids=\[0\] must name the one device the module is on \(cpu\)"):
        DistributedDataParallel(nn.Linear(2, 2), device_ids=[0])


def test_ddp_on_the_gpu_in_a_group_of_one(cupy):
    dist.init_process_group()
    try:
        x, y = randn(6, 2, 8, 8), np.arange(6) % 3
        cpu = worker.small_model(seed=0, sync=True)
        gpu = DistributedDataParallel(worker.small_model(seed=0, sync=True).to("cuda"), bucket_cap_mb=0.0002)
        F.cross_entropy(gpu(mg.tensor(x, device="cuda")), mg.tensor(y, device="cuda")).backward()
        for mine, theirs in zip(gpu.parameters(), one_step_gradients(cpu, x, y)):
            np.testing.assert_allclose(mine.grad.numpy(), theirs, rtol=1e-9, atol=1e-12)
    finally:
        dist.destroy_process_group()


# ----- SyncBatchNorm ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5)])
@pytest.mark.parametrize("options", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}])
def test_sync_batchnorm_in_a_group_of_one_is_batchnorm_exactly(group_of_one, shape, options):
    x = randn(*shape)
    plain = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(3, **options).double()
    synced = nn.SyncBatchNorm(3, **options).double()
    for training in (True, True, False):
        plain.train(training), synced.train(training)
        inputs = [mg.tensor(x * (1 + training), requires_grad=True) for _ in range(2)]
        outs = [plain(inputs[0]), synced(inputs[1])]
        np.testing.assert_array_equal(outs[0].numpy(), outs[1].numpy())
        for out in outs:
            (out * mg.tensor(randn(*shape, seed=1))).sum().backward()
        np.testing.assert_array_equal(inputs[0].grad.numpy(), inputs[1].grad.numpy())
    for (key, a), (other, b) in zip(plain.state_dict().items(), synced.state_dict().items()):
        assert key == other
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def sync_batch_norm(x, weight, bias):
    return SyncBatchNormFunction.apply(x, weight, bias, momentum=0.1, eps=1e-5)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 4, 4)])
def test_the_sync_rule_on_one_rank_equals_batchnorms_and_its_gradient_checks(group_of_one, shape):
    x, weight, bias = randn(*shape) * 3 + 2, randn(3, seed=1), randn(3, seed=2)
    running = [mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64)]
    synced = [mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64)]
    inputs = [[mg.tensor(a, requires_grad=True) for a in (x, weight, bias)] for _ in range(2)]
    expected = F.batch_norm(inputs[0][0], *running, inputs[0][1], inputs[0][2], training=True)
    out = SyncBatchNormFunction.apply(*inputs[1], running_mean=synced[0].data, running_var=synced[1].data)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    for a, b in zip(running, synced):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12)
    upstream = mg.tensor(randn(*shape, seed=3))
    (expected * upstream).sum().backward()
    (out * upstream).sum().backward()
    for a, b in zip(*inputs):
        np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), rtol=1e-10, atol=1e-12)
    check_grad(sync_batch_norm, x, weight, bias)


def test_the_sync_rule_on_the_gpu(cupy):
    dist.init_process_group()
    try:
        x = randn(4, 3, 5, 5) + 1
        gpu = [mg.tensor(a, device="cuda", requires_grad=True) for a in (x, randn(3, seed=1), randn(3, seed=2))]
        cpu = [mg.tensor(a.numpy(), requires_grad=True) for a in gpu]
        outs = [sync_batch_norm(*tensors) for tensors in (gpu, cpu)]
        np.testing.assert_allclose(outs[0].numpy(), outs[1].numpy(), rtol=1e-10, atol=1e-12)
        for out in outs:
            (out * out).sum().backward()
        for a, b in zip(gpu, cpu):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    finally:
        dist.destroy_process_group()


def test_the_sync_rule_needs_two_values_per_channel(group_of_one):
    with pytest.raises(ValueError, match="more than 1 value per channel over all ranks.*got 1"):
        sync_batch_norm(mg.tensor(randn(1, 3)), None, None)


def test_sync_batchnorm_input_errors():
    layer = nn.SyncBatchNorm(3)
    with pytest.raises(RuntimeError, match=r"SyncBatchNorm: expected 2-D \(N, C\) or 4-D .*got shape \(2, 3, 4\)"):
        layer(mg.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(3\): input has 2 channels"):
        layer(mg.zeros(2, 2))


def test_convert_sync_batchnorm_keeps_the_tensors_and_the_keys():
    shared = nn.BatchNorm1d(4, eps=1e-3, momentum=0.2)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, affine=False), nn.Flatten(), nn.Linear(2, 4),
                          shared, nn.Sequential(shared))
    model.eval()
    keys, tensors = list(model.state_dict()), [t for _, t in model._state_tensors()]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model and list(converted.state_dict()) == keys
    assert [t for _, t in converted._state_tensors()] == tensors  # the same objects
    assert isinstance(model[1], nn.SyncBatchNorm) and model[1].weight is None
    assert isinstance(model[4], nn.SyncBatchNorm) and model[5][0] is model[4]  # shared: converted once
    assert (model[4].eps, model[4].momentum, model[4].training) == (1e-3, 0.2, False)
    alone = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(3))
    assert type(alone) is nn.SyncBatchNorm


# ----- DistributedSampler and DataLoader(sampler=) ---------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 7, 12, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_the_shards_are_disjoint_equal_and_complete(size, replicas, drop_last):
    samplers = [mg.data.DistributedSampler(range(size), replicas, rank, seed=3, drop_last=drop_last)
                for rank in range(replicas)]
    shards = [list(sampler) for sampler in samplers]
    per_rank = size // replicas if drop_last else -(-size // replicas)
    assert [len(shard) for shard in shards] == [len(sampler) for sampler in samplers] == [per_rank] * replicas
    every = [i for shard in shards for i in shard]
    if drop_last:  # disjoint, the remainder left out
        assert len(set(every)) == len(every) == size - size % replicas
    else:  # every index, and the padding repeats as few as the even split needs
        assert set(every) == set(range(size))
        assert len(every) - len(set(every)) == (per_rank * replicas - size if size else 0)


@pytest.mark.parametrize("size, replicas, drop_last",
                         [(10, 3, False), (10, 3, True), (2, 5, False), (9, 3, False), (2, 5, True)])
def test_the_sampler_without_shuffle_equals_pytorchs(size, replicas, drop_last):
    torch_data = pytest.importorskip("torch.utils.data")
    for rank in range(replicas):
        mine = mg.data.DistributedSampler(range(size), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = torch_data.DistributedSampler(range(size), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(mine) == list(theirs) and len(mine) == len(theirs)


def test_the_shuffled_order_is_one_permutation_per_epoch_shared_by_the_ranks():
    samplers = [mg.data.DistributedSampler(range(10), 2, rank, seed=5) for rank in range(2)]
    first = [list(s) for s in samplers]
    order = np.random.default_rng(5).permutation(10)
    assert first == [order[0::2].tolist(), order[1::2].tolist()]
    assert [list(s) for s in samplers] == first  # no set_epoch: the same order again
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert second != first and sorted(second[0] + second[1]) == list(range(10))


def test_sampler_errors_and_defaults(group_of_one):
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        mg.data.DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive integer, got 0"):
        mg.data.DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        mg.data.DistributedSampler(range(4), seed=-1)
    sampler = mg.data.DistributedSampler(range(4))  # the group's rank 0 of 1
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 4)


def test_the_dataloader_follows_its_sampler():
    data = mg.data.TensorDataset(np.arange(10) * 10)
    sampler = mg.data.DistributedSampler(data, num_replicas=2, rank=1, shuffle=False)
    loader = mg.data.DataLoader(data, batch_size=2, sampler=sampler)
    assert len(loader) == 3
    assert [batch[0].tolist() for batch in loader] == [[10, 30], [50, 70], [90]]
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        mg.data.DataLoader(data, shuffle=True, sampler=sampler)
    shuffled = mg.data.DataLoader(data, batch_size=2, sampler=mg.data.DistributedSampler(data, 2, 0, seed=1))
    epoch = iter(shuffled)
    next(epoch)
    state = shuffled.state_dict()  # one batch of the epoch done
    resumed = mg.data.DataLoader(data, batch_size=2, sampler=mg.data.DistributedSampler(data, 2, 0, seed=1))
    resumed.load_state_dict(state)
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in epoch]  # the rest of the same epoch


def test_create_graph_through_ddp_gives_the_plain_models_second_derivatives(group_of_one):
    """DDP's bucket nodes have textbook rules: a gradient penalty through DDP equals the unwrapped model's."""
    x, y = randn(6, 2, 8, 8), np.arange(6) % 3

    def penalty_gradients(model, parameters):
        loss = F.cross_entropy(model(mg.tensor(x)), mg.tensor(y))
        grads = mg.autograd.grad(loss, parameters, create_graph=True)
        penalty = sum((g * g).sum() for g in grads)
        return [g.numpy() for g in mg.autograd.grad(penalty, parameters)]

    plain = worker.small_model(seed=0, sync=False).double()
    wrapped_model = worker.small_model(seed=0, sync=False).double()
    wrapped = DistributedDataParallel(wrapped_model, bucket_cap_mb=0.0002)  # several buckets
    expected = penalty_gradients(plain, list(plain.parameters()))
    got = penalty_gradients(wrapped, list(wrapped_model.parameters()))
    assert len(got) == len(expected) > 2
    for mine, theirs in zip(got, expected):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
