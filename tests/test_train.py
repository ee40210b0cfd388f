"""The training application (models/training.py behind scripts/train.py, evaluate.py) on tiny data:
outputs, bit-exact resume, Ctrl-C. The command line's checks and messages are in test_cli.py."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minigrad as mg

from models import cli, training
from scriptload import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar-10-batches-py")
train, evaluate = load_script("train"), load_script("evaluate")

needs_mnist = pytest.mark.skipif(not os.path.isdir(MNIST), reason="the shared MNIST files are not here")


def train_main(argv):
    """train.py's exit status for ``argv``, run in this process (user errors reported, not raised)."""
    return cli.run(train.main, argv)


def run_train(*argv):
    assert train_main([*argv, "--quiet"]) == 0


def run_evaluate(*argv):
    return cli.run(evaluate.main, argv)


def weights(out):
    return {key: value.numpy() for key, value in mg.load(os.path.join(out, "checkpoint.npz"))["model"].items()}


@needs_mnist
def test_a_short_run_writes_metrics_checkpoint_and_curves(tmp_path, capsys):
    out = str(tmp_path / "run")
    run_train("mnist_bn", "--data-dir", MNIST, "--limit", "192", "--test-limit", "100", "--epochs", "2",
              "--out", out)
    report = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert [row["epoch"] for row in report["epochs"]] == [1, 2]
    for row in report["epochs"]:
        assert set(row) >= {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
                            "images_per_second"}
        assert 0 <= row["test_accuracy"] <= 1 and row["train_loss"] > 0 and row["images_per_second"] > 0
    assert report["test_accuracy"] == report["epochs"][-1]["test_accuracy"]
    assert report["args"]["lr"] == 5e-4 and report["args"]["batch_size"] == 64  # the seed's own settings
    checkpoint = mg.load(os.path.join(out, "checkpoint.npz"))
    assert checkpoint["epoch"] == 2 and checkpoint["model_name"] == "mnist_bn"
    assert open(os.path.join(out, "curves.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "Total params: 3,275,018" in printed and "epoch 2: train loss" in printed

    # evaluate.py rebuilds the model from the checkpoint and finds the same accuracy
    assert run_evaluate(os.path.join(out, "checkpoint.npz")) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy {report['test_accuracy']:.4f}" in printed
    assert "confusion matrix" in printed
    assert os.path.getsize(os.path.join(out, "confusion.png")) > 1000


def interrupt_in_epoch(monkeypatch, epoch):
    """Make the next run get a Ctrl-C halfway through ``epoch`` (counting from 1)."""
    original = training.Trainer.train_epoch

    def train_epoch(self, progress):
        if self.epoch + 1 == epoch:
            def stop_halfway(batches, desc):
                for number, batch in enumerate(batches):
                    if number == len(self.loader) // 2:
                        raise KeyboardInterrupt
                    yield batch
            return original(self, stop_halfway)
        return original(self, progress)
    monkeypatch.setattr(training.Trainer, "train_epoch", train_epoch)


def check_resume_bit_for_bit(tmp_path, monkeypatch, capsys, *device):
    """A run stopped in epoch 2 and resumed ends with the weights and losses of a run never stopped; then
    evaluate.py (standardising with the statistics the run saved) finds the run's accuracy."""
    common = ["mnist_bn", *device, "--data-dir", MNIST, "--limit", "96", "--test-limit", "50", "--batch-size",
              "32", "--standardize", "--augment", "shift+flip", "--schedule", "cosine", "--epochs", "3"]
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    run_train(*common, "--out", straight)
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, 2)
        assert train_main([*common, "--out", stopped, "--quiet"]) == 130
    assert mg.load(os.path.join(stopped, "checkpoint.npz"))["epoch"] == 1
    run_train("mnist_bn", "--out", stopped, "--resume")  # on the run's own device
    a, b = weights(straight), weights(stopped)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    metrics = [json.load(open(os.path.join(out, "metrics.json")))["epochs"] for out in (straight, stopped)]
    assert [row["train_loss"] for row in metrics[0]] == [row["train_loss"] for row in metrics[1]]
    capsys.readouterr()
    assert run_evaluate(os.path.join(stopped, "checkpoint.npz"), *device) == 0
    accuracy = json.load(open(os.path.join(stopped, "metrics.json")))["test_accuracy"]
    assert f"test accuracy {accuracy:.4f}" in capsys.readouterr().out


@needs_mnist
def test_a_resumed_run_ends_with_the_same_weights_bit_for_bit(tmp_path, monkeypatch, capsys):
    """Dropout, shuffling and augmentation all draw random numbers: their states must come back exactly."""
    check_resume_bit_for_bit(tmp_path, monkeypatch, capsys)


def test_ctrl_c_keeps_the_last_finished_epoch(tmp_path):
    out = str(tmp_path / "run")
    process = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "train.py"), "mlp_bn", "--epochs", "100000",
                                "--out", out, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    checkpoint = os.path.join(out, "checkpoint.npz")
    deadline = time.time() + 60
    while not os.path.exists(checkpoint) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert os.path.exists(checkpoint), process.communicate()[1]
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    saved = mg.load(checkpoint)
    assert saved["epoch"] >= 1
    assert len(json.loads(saved["metrics"])) == saved["epoch"]


def test_mlp_bn_learns_its_synthetic_task(tmp_path):
    out = str(tmp_path / "run")
    run_train("mlp_bn", "--epochs", "3", "--out", out)
    assert json.load(open(os.path.join(out, "metrics.json")))["test_accuracy"] > 0.6


@pytest.mark.skipif(not os.path.isdir(CIFAR), reason="the shared CIFAR-10 files are not here")
def test_cifar_bn_trains_with_and_without_batch_norm(tmp_path):
    for flag in ([], ["--no-bn"]):
        out = str(tmp_path / f"run{len(flag)}")
        run_train("cifar_bn", "--data-dir", CIFAR, "--limit", "64", "--test-limit", "32", "--epochs", "1",
                  "--out", out, *flag)
        checkpoint = mg.load(os.path.join(out, "checkpoint.npz"))
        assert any("running_mean" in key for key in checkpoint["model"]) == (not flag)


def test_catsdogs_models_train_on_an_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for label, name in enumerate(("cats", "dogs")):
            os.makedirs(tmp_path / "data" / split / name)
            for i in range(6):
                pixels = rng.integers(0, 100, (40, 50, 3)) + 120 * label
                Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "data" / split / name / f"{i}.png")
    for model in ("catsdogs_logreg", "catsdogs_wide", "catsdogs_deep"):
        out = str(tmp_path / model)
        run_train(model, "--data-dir", str(tmp_path / "data"), "--image-size", "128", "--epochs", "1",
                  "--batch-size", "4", "--out", out)
        report = json.load(open(os.path.join(out, "metrics.json")))
        assert report["args"]["image_size"] == 128 and 0 <= report["test_accuracy"] <= 1


def test_torch_reference_trains_the_same_network_to_the_same_accuracy(tmp_path):
    """mlp_bn has no dropout, so with the same weights and batches PyTorch's run differs only by rounding."""
    pytest.importorskip("torch")
    torch_reference = load_script("torch_reference")
    out = str(tmp_path / "run")
    run_train("mlp_bn", "--epochs", "2", "--out", out)
    assert torch_reference.main(["mlp_bn", "--epochs", "2", "--out", out]) == 0
    ours = json.loads(open(os.path.join(out, "metrics.json")).read())["epochs"]
    theirs = json.loads(open(os.path.join(out, "torch_metrics.json")).read())["epochs"]
    assert len(theirs) == 2 and ours[0]["test_accuracy"] > 0.3  # it learned something
    for mine, reference in zip(ours, theirs):
        assert abs(mine["test_accuracy"] - reference["test_accuracy"]) <= 0.005
