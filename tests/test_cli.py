"""The command lines of train.py, evaluate.py and predict.py, run as a user runs them (subprocesses, an
empty home directory, no network): exit status, the message, and never a traceback for a user's mistake."""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import MNIST

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
CATS_AND_DOGS = os.path.join(SHARED, "dogs-vs-cats", "smallData")
needs_cats = pytest.mark.skipif(not os.path.isdir(CATS_AND_DOGS), reason="the shared Dogs vs. Cats files are not here")


def environment(home):
    env = {key: value for key, value in os.environ.items() if key != "MINIGRAD_DATA"}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1")
    return env


def script(name, *args, home, check=None, timeout=300):
    """Run ``scripts/<name>.py args`` with ``home`` as $HOME; its CompletedProcess, after the universal checks."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, cwd=home, env=environment(home))
    if "--debug" not in args:
        assert "Traceback" not in result.stderr, result.stderr
    if check is not None:
        assert result.returncode == check, (result.returncode, result.stdout[-2000:], result.stderr)
    return result


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("home")  # empty: no ~/.cache/minigrad, so MNIST is "not found"
    return folder


@pytest.fixture(scope="module")
def mnist_run(home):
    """mnist_bn trained out of the box: no data anywhere, so on the bundled sample (1,500 images, batch 32, 1 epoch)."""
    out = home / "mnist"
    result = script("train", "mnist_bn", "--limit", 1500, "--batch-size", 32, "--test-limit", 500, "--epochs", 1, "--out", out,
                    "--quiet", home=home, check=0)
    return out, result


@pytest.fixture(scope="module")
def mlp_run(home):
    out = home / "mlp"
    script("train", "mlp_bn", "--epochs", 1, "--out", out, "--quiet", home=home, check=0)
    return out


# ----- 1. out of the box ---------------------------------------------------------------------

def test_mnist_trains_on_the_bundled_sample_when_no_mnist_is_found(mnist_run):
    out, result = mnist_run
    notices = [line for line in result.stdout.splitlines() if "sample bundled with minigrad" in line]
    assert len(notices) == 1 and "--download" in notices[0]
    report = json.load(open(out / "metrics.json"))
    assert report["args"]["sample"] is True
    assert report["test_accuracy"] > 0.8  # 1,500 real digits, one epoch


def test_download_fetches_checksummed_files_then_trains(tmp_path, monkeypatch):
    """--download with the publisher's URL pointed at local files (the machine is offline)."""
    from models import cli
    from scriptload import load_script
    source = tmp_path / "publisher"
    source.mkdir()
    md5 = {}
    for file in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(MNIST.SAMPLE_FOLDER, file), source / file)
        import hashlib
        md5[file] = hashlib.md5((source / file).read_bytes()).hexdigest()
    monkeypatch.setattr(MNIST, "url", source.as_uri() + "/")
    monkeypatch.setattr(MNIST, "md5", md5)
    data = tmp_path / "data"
    status = cli.run(load_script("train").main, ["mnist_bn", "--download", "--data-dir", str(data), "--limit", "64",
                                                 "--test-limit", "64", "--epochs", "1", "--out",
                                                 str(tmp_path / "run"), "--quiet"])
    assert status == 0
    assert sorted(os.listdir(data / "mnist")) == sorted(md5)
    assert json.load(open(tmp_path / "run" / "metrics.json"))["args"]["sample"] is False


# ----- 2. every option validated when parsed ---------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
    (["--epochs", "-1"], "--epochs: expected a positive integer, got '-1'"),
    (["--epochs", "two"], "--epochs: expected a positive integer, got 'two'"),
    (["--lr", "0"], "--lr: expected a positive number, got '0'"),
    (["--lr", "nan"], "--lr: expected a finite number"),
    (["--batch-size", "0"], "--batch-size: expected a positive integer"),
    (["--limit", "0"], "--limit: expected a positive integer"),
    (["--limit", "-5"], "--limit: expected a positive integer"),
    (["--test-limit", "0"], "--test-limit: expected a positive integer"),
    (["--seed", "-1"], "--seed: expected a non-negative integer"),
    (["--device", "gpu"], "--device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (["--dataset", "imagenet"], "--dataset: invalid choice: 'imagenet'"),
    (["--image-size", "64"], "--image-size is for the Dogs vs. Cats models"),
    (["--init", "xavier"], "--init 'xavier': mnist_bn takes one of seed, pytorch"),
    (["--augment", "rotate"], "--augment: invalid choice"),
    (["--resume"], "--resume needs --out"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_a_bad_option_is_refused_in_one_line_before_anything_runs(home, args, message):
    result = script("train", "mnist_bn", *args, home=home, check=2)
    assert message in result.stderr and result.stderr.startswith("train.py: ")
    assert result.stdout == ""


def test_an_image_size_the_network_cannot_take_is_a_usage_error(home):
    result = script("train", "catsdogs_deep", "--image-size", 16, "--data-dir", home, home=home, check=2)
    assert "--image-size" not in result.stderr or "too small" in result.stderr
    assert "cannot build catsdogs_deep" in result.stderr and "too small" in result.stderr
    result = script("train", "catsdogs_wide", "--image-size", 0, home=home, check=2)
    assert "--image-size: expected a positive integer" in result.stderr


def test_unknown_model_and_download_of_what_cannot_be_downloaded(home):
    assert "invalid choice: 'resnet'" in script("train", "resnet", home=home, check=2).stderr
    result = script("train", "catsdogs_wide", "--download", home=home, check=2)
    assert "--download: minigrad cannot fetch dogs-vs-cats" in result.stderr


# ----- 3. --resume honours or refuses ----------------------------------------------------------

def test_resume_refuses_another_model_and_options_that_change_the_run(home, mlp_run):
    result = script("train", "mnist_bn", "--out", mlp_run, "--resume", home=home, check=2)
    assert "holds a run of mlp_bn, not mnist_bn" in result.stderr
    result = script("train", "mlp_bn", "--out", mlp_run, "--resume", "--lr", 0.1, "--batch-size", 8, home=home, check=2)
    assert "--batch-size 8 (the run has 32)" in result.stderr and "--lr 0.1 (the run has 0.001)" in result.stderr
    assert "may change only --epochs, --device, --data-dir, --test-limit" in result.stderr
    result = script("train", "mlp_bn", "--out", mlp_run, home=home, check=2)  # no --resume: not overwritten
    assert "exists; pass --resume" in result.stderr


def test_resume_accepts_the_run_own_options_and_new_epochs(home, mlp_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(mlp_run, out)
    result = script("train", "mlp_bn", "--out", out, "--resume", "--lr", 0.001, "--epochs", 2, "--quiet",
                    home=home, check=0)
    assert "resuming mlp_bn from epoch 1" in result.stdout and "epoch 2:" in result.stdout
    assert int(mg.load(os.path.join(out, "checkpoint.npz"))["epoch"]) == 2


def test_resume_reads_the_data_from_where_it_moved(home, tmp_path):
    first = tmp_path / "first"
    shutil.copytree(MNIST.SAMPLE_FOLDER, first)
    out = tmp_path / "run"
    common = ["--limit", 64, "--test-limit", 64, "--quiet"]
    script("train", "mnist_bn", "--data-dir", first, "--epochs", 1, "--out", out, *common, home=home, check=0)
    moved = tmp_path / "moved"
    first.rename(moved)
    result = script("train", "mnist_bn", "--out", out, "--resume", "--epochs", 2, home=home, check=1)
    assert str(first) in result.stderr and "mnist" in result.stderr  # the old place, and what was looked for
    script("train", "mnist_bn", "--out", out, "--resume", "--epochs", 2, "--data-dir", moved, home=home, check=0)
    saved = json.loads(mg.load(os.path.join(out, "checkpoint.npz"))["args"])
    assert saved["data_dir"] == str(moved) and saved["epochs"] == 2


# ----- 4. fail before training ---------------------------------------------------------------

def test_an_unwritable_out_is_found_before_training(home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = script("train", "mlp_bn", "--out", blocker / "run", home=home, check=1)
    assert "cannot write the run's outputs into --out" in result.stderr
    assert "epoch 1" not in result.stdout and "Model:" not in result.stdout


def write_image_folders(root, classes_by_split, count=3):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, classes in classes_by_split.items():
        for name in classes:
            os.makedirs(root / split / name)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")


def test_train_and_test_classes_that_disagree_are_found_before_training(home, tmp_path):
    write_image_folders(tmp_path / "data", {"train": ["cats", "dogs"], "validation": ["cats", "dogz"]})
    result = script("train", "catsdogs_logreg", "--data-dir", tmp_path / "data", "--image-size", 16,
                    "--out", tmp_path / "run", home=home, check=1)
    assert "different classes" in result.stderr and "'dogz'" in result.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists() and "epoch 1" not in result.stdout


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_an_empty_data_set_is_found_before_training(home, tmp_path):
    data = tmp_path / "empty"
    data.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", np.zeros((0,)))
    result = script("train", "mnist_bn", "--data-dir", data, "--out", tmp_path / "run", home=home, check=1)
    assert "training split is empty" in result.stderr


def test_ctrl_c_in_the_first_epoch_does_not_advise_resume(home, tmp_path):
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "mnist_bn",
                                "--out", str(tmp_path / "run"), "--quiet"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=home, env=environment(home))
    for line in process.stdout:  # the line before the first epoch starts
        if line.startswith("mnist_bn on mnist"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "before any epoch finished: nothing was saved" in stderr
    assert "--resume" not in stderr and "Traceback" not in stderr


# ----- 5. no tracebacks for the user's mistakes --------------------------------------------------

def test_missing_and_damaged_data(home, tmp_path):
    result = script("train", "mnist_bn", "--data-dir", tmp_path / "nowhere", home=home, check=1)
    assert "loading the mnist training data" in result.stderr and "nowhere" in result.stderr
    # the remedy in the options a script user types, not the library's arguments
    assert "pass --data-dir FOLDER" in result.stderr and "--download" in result.stderr
    assert "download=True" not in result.stderr and "root=" not in result.stderr
    damaged = tmp_path / "damaged"
    shutil.copytree(MNIST.SAMPLE_FOLDER, damaged)
    images = damaged / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-1000])  # the end cut off: gzip finds the stream truncated
    result = script("train", "mnist_bn", "--data-dir", damaged, "--out", tmp_path / "run", home=home, check=1)
    assert "train-images-idx3-ubyte.gz" in result.stderr and "not a valid gzip file" in result.stderr


def test_debug_shows_the_traceback(home, tmp_path):
    result = script("train", "mnist_bn", "--data-dir", tmp_path / "nowhere", "--debug", home=home, check=1)
    assert "Traceback" in result.stderr and "loading the mnist training data" in result.stderr


def test_damaged_and_missing_checkpoints(home, mlp_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.npz").write_bytes((mlp_run / "checkpoint.npz").read_bytes()[:100])
    for name, args in (("train", ["mlp_bn", "--out", broken, "--resume"]), ("evaluate", [broken / "checkpoint.npz"]),
                       ("predict", [broken / "checkpoint.npz", "x.png"])):
        result = script(name, *args, home=home, check=1)
        assert "checkpoint.npz" in result.stderr and "not a zip" in result.stderr, name
    result = script("evaluate", tmp_path / "missing.npz", home=home, check=1)
    assert "no such checkpoint" in result.stderr
    result = script("train", "mlp_bn", "--out", tmp_path / "nothing", "--resume", home=home, check=1)
    assert "no checkpoint at" in result.stderr
    other = tmp_path / "other.npz"
    mg.save({"weights": mg.zeros(3)}, str(other))
    assert "not a checkpoint written by scripts/train.py" in script("evaluate", other, home=home, check=1).stderr


def test_a_device_that_cannot_be_used_is_reported(home, tmp_path):
    """CI has no GPU (and may have CuPy without one): 'cuda' fails before training, with the reason."""
    try:
        mg.zeros((), device="cuda").numpy()
        pytest.skip("a GPU is usable here")
    except RuntimeError:
        pass
    result = script("train", "mlp_bn", "--device", "cuda", "--out", tmp_path / "run", home=home, check=1)
    assert "--device cuda: device 'cuda'" in result.stderr


def test_ctrl_c_while_loading_and_program_errors(monkeypatch, tmp_path, capsys):
    """In process: Ctrl-C anywhere is exit 130 and one line; a bug keeps its traceback (it is raised)."""
    from models import cli, datasets, training
    from scriptload import load_script
    train = load_script("train")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(datasets, "load", interrupted)
    assert cli.run(train.main, ["mlp_bn", "--out", str(tmp_path / "a")]) == 130
    assert "interrupted" in capsys.readouterr().err

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.undo()
    monkeypatch.setattr(training, "fit", bug)
    with pytest.raises(ZeroDivisionError):
        cli.run(train.main, ["mlp_bn", "--out", str(tmp_path / "b"), "--quiet"])


# ----- 6. predict.py -------------------------------------------------------------------------

def save_png(path, pixels):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(pixels).save(path)


def test_predict_names_real_mnist_test_digits(home, mnist_run, tmp_path):
    out, _ = mnist_run
    test = MNIST.sample(train=False)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        save_png(paths[-1], np.round(test.images[i, 0] * 255).astype(np.uint8))
    result = script("predict", out / "checkpoint.npz", *paths, "--top", 2, home=home, check=0)
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        path, ranked = line.split(": ")
        assert path == str(paths[i])
        (best, p1), (_, p2) = [entry.rsplit(" ", 1) for entry in ranked.split(", ")]
        assert best == str(test.labels[i]), line
        assert float(p1.rstrip("%")) >= float(p2.rstrip("%"))


def test_predict_prepares_an_image_exactly_as_the_training_data(tmp_path):
    """An MNIST test image written to PNG reads back bit-equal to the loader's array; a photo of an
    image folder reads back bit-equal to ImageFolder's."""
    from models import datasets
    test = MNIST.sample(train=False)
    save_png(tmp_path / "d.png", np.round(test.images[5, 0] * 255).astype(np.uint8))
    assert np.array_equal(datasets.read_image(tmp_path / "d.png", "mnist", (1, 28, 28)), test.images[5])
    write_image_folders(tmp_path / "f", {"train": ["cats", "dogs"]})
    folder = mg.data.ImageFolder(tmp_path / "f" / "train", size=(12, 10))
    for index, path in enumerate(folder.files):
        assert np.array_equal(datasets.read_image(path, "dogs-vs-cats", (3, 12, 10)), folder.images[index])


@needs_cats
def test_predict_names_a_real_cat_photo_and_evaluate_reads_a_class_folder(home, tmp_path):
    """catsdogs_logreg fitted to 24 real photos of each class; predict names its cat photos as cats, and
    evaluate over a folder of cats alone agrees with predict."""
    data = tmp_path / "data"
    for split in ("train", "validation"):
        for name in ("cats", "dogs"):
            os.makedirs(data / split / name)
            for file in sorted(os.listdir(os.path.join(CATS_AND_DOGS, "train", name)))[:24]:
                shutil.copy(os.path.join(CATS_AND_DOGS, "train", name, file), data / split / name / file)
    out = tmp_path / "run"
    script("train", "catsdogs_logreg", "--data-dir", data, "--image-size", 32, "--epochs", 20, "--batch-size", 16,
           "--out", out, "--quiet", home=home, check=0)
    assert json.load(open(out / "metrics.json"))["epochs"][-1]["train_accuracy"] == 1.0
    cats = sorted((data / "train" / "cats").iterdir())[:3]
    result = script("predict", out / "checkpoint.npz", *cats, home=home, check=0)
    assert [line.split(": ")[1].split()[0] for line in result.stdout.splitlines()] == ["cats"] * 3
    only_cats = tmp_path / "new-photos"
    shutil.copytree(data / "train" / "cats", only_cats / "cats")
    result = script("evaluate", out / "checkpoint.npz", "--data-dir", only_cats, home=home, check=0)
    assert "24 images from" in result.stdout and "test accuracy 1.0000 (24 of 24)" in result.stdout
    result = script("evaluate", out / "checkpoint.npz", "--data-dir", data / "train", home=home, check=0)
    assert "test accuracy 1.0000 (48 of 48)" in result.stdout


def test_predict_errors(home, mnist_run, tmp_path):
    out, _ = mnist_run
    result = script("predict", out / "checkpoint.npz", tmp_path / "missing.png", home=home, check=1)
    assert "reading the image" in result.stderr and "missing.png" in result.stderr
    (tmp_path / "text.png").write_text("not an image")
    result = script("predict", out / "checkpoint.npz", tmp_path / "text.png", home=home, check=1)
    assert "text.png" in result.stderr
    result = script("predict", out / "checkpoint.npz", tmp_path / "text.png", "--top", 11, home=home, check=2)
    assert "--top 11: the model has 10 classes" in result.stderr
    assert "the following arguments are required" in script("predict", home=home, check=2).stderr


# ----- 7. evaluate.py ----------------------------------------------------------------------------

def test_evaluate_warns_instead_of_reporting_the_accuracy_of_nan(home, mlp_run, tmp_path):
    checkpoint = mg.load(str(mlp_run / "checkpoint.npz"))
    first = next(key for key in checkpoint["model"] if key.endswith("weight"))
    checkpoint["model"][first] = checkpoint["model"][first] * float("nan")
    mg.save(checkpoint, str(tmp_path / "nan.npz"))
    result = script("evaluate", tmp_path / "nan.npz", home=home, check=1)
    assert "the model outputs NaN for 800 of 800 images" in result.stderr
    assert "test accuracy" not in result.stdout


def test_evaluate_refuses_a_class_folder_with_unknown_classes(home, mnist_run, tmp_path):
    out, _ = mnist_run
    write_image_folders(tmp_path / "photos", {"x": ["cats"]})
    result = script("evaluate", out / "checkpoint.npz", "--data-dir", tmp_path / "photos" / "x", home=home, check=1)
    assert "loading the mnist test data" in result.stderr
