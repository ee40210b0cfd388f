"""scripts/train.py under ``mpiexec -n 2``: one process's accuracy, rank 0 alone writing, exact resume.

Skipped without mpi4py and mpiexec (``pip install -e ".[distributed]"``).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from test_distributed import MPIEXEC, mpiexec, needs_mpi, worker_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "scripts", "train.py")
pytestmark = needs_mpi


def train(ranks, *args, home, check=0):
    """train.py on ``ranks`` processes (1: plain python), with $HOME empty so MNIST is the bundled sample."""
    env = dict(worker_environment(), HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("MINIGRAD_DATA", None)
    prefix = mpiexec(ranks) if ranks > 1 else []
    done = subprocess.run(prefix + [sys.executable, TRAIN, *map(str, args), "--quiet"], capture_output=True,
                          text=True, timeout=600, cwd=str(home), env=env)
    assert done.returncode == check, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def weights(out):
    return {key: value.numpy() for key, value in mg.load(os.path.join(out, "checkpoint.npz"))["model"].items()}


def test_two_processes_reach_the_accuracy_of_one(tmp_path):
    """The same global batch (2 x 32 against 1 x 64) and the same steps: the same accuracy within noise."""
    common = ["mnist_bn", "--limit", 2000, "--test-limit", 1000, "--epochs", 1]
    one = train(1, *common, "--batch-size", 64, "--out", tmp_path / "one", home=tmp_path)
    two = train(2, *common, "--batch-size", 32, "--out", tmp_path / "two", home=tmp_path)
    accuracy = {n: json.load(open(tmp_path / n / "metrics.json"))["test_accuracy"] for n in ("one", "two")}
    assert accuracy["one"] > 0.85 and abs(accuracy["one"] - accuracy["two"]) < 0.04, accuracy
    # rank 0 alone prints: one header, one line per epoch
    assert two.stdout.count("epoch 1:") == 1 and two.stdout.count("Model:") == 1
    assert "batch 32 per process" in two.stdout and "2 processes" in two.stdout
    # the checkpoint holds the plain model (SyncBatchNorm's names are BatchNorm's): it loads in one process
    checkpoint = mg.load(os.path.join(tmp_path / "two", "checkpoint.npz"))
    assert set(checkpoint["model"]) == set(mg.load(os.path.join(tmp_path / "one", "checkpoint.npz"))["model"])
    assert int(checkpoint["world_size"]) == 2
    evaluate = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"),
                               str(tmp_path / "two" / "checkpoint.npz")], capture_output=True, text=True,
                              env=dict(worker_environment(), HOME=str(tmp_path)), cwd=str(tmp_path))
    assert evaluate.returncode == 0 and f"test accuracy {accuracy['two']:.4f}" in evaluate.stdout


def test_a_resumed_two_process_run_ends_bit_for_bit_as_one_never_stopped(tmp_path):
    """Every rank's generators (dropout, shifts) are in the checkpoint; the sampler's epoch is the run's."""
    common = ["mnist_bn", "--limit", 256, "--test-limit", 64, "--batch-size", 32, "--augment", "shift"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(2, *common, "--epochs", 2, "--out", straight, home=tmp_path)
    train(2, *common, "--epochs", 1, "--out", stopped, home=tmp_path)
    train(2, "mnist_bn", "--epochs", 2, "--out", stopped, "--resume", home=tmp_path)
    a, b = weights(straight), weights(stopped)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    refused = train(1, "mnist_bn", "--epochs", 3, "--out", stopped, "--resume", home=tmp_path, check=2)
    assert "written by a run of 2 rank(s), this one has 1" in refused.stderr


def test_per_rank_batch_norm_is_an_option(tmp_path):
    common = ["mnist_bn", "--limit", 128, "--test-limit", 64, "--batch-size", 32, "--epochs", 1]
    train(2, *common, "--out", tmp_path / "sync", home=tmp_path)
    train(2, *common, "--bn-per-rank", "--out", tmp_path / "local", home=tmp_path)
    sync, local = weights(tmp_path / "sync"), weights(tmp_path / "local")
    moved = [key for key in sync if "running_mean" in key]
    assert moved and any(not np.array_equal(sync[key], local[key]) for key in moved)
    saved = json.loads(mg.load(os.path.join(tmp_path / "local", "checkpoint.npz"))["args"])
    assert saved["bn_per_rank"] is True
