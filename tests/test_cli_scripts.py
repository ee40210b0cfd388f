"""The other scripts' command lines (benchmark, bn_ablation, profile_step, torch_reference, gpu_check,
cupy_names), run as a user runs them: a mistake is refused in one paragraph, with exit status 2 (usage)
or 1 (data, files, a missing PyTorch), before any work and never with a traceback (``--debug`` adds it).
tests/test_cli.py does the same for train.py, evaluate.py and predict.py."""
import os
import subprocess
import sys
import types

import pytest

from minigrad.data import MNIST
from models import cli
from scriptload import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(home, pythonpath=None):
    env = {key: value for key, value in os.environ.items()
           if key not in ("MINIGRAD_DATA", "OUT", "MINIGRAD_TEST_CUPY", "PYTHONPATH")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def script(name, *args, home, check, pythonpath=None):
    """Run ``scripts/<name>.py args`` in an empty ``home``; its CompletedProcess, after the universal checks."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=120, cwd=home,
                            env=environment(home, pythonpath))
    assert result.returncode == check, (result.returncode, result.stdout[-2000:], result.stderr)
    if "--debug" not in args:  # the one paragraph, named by the script
        assert "Traceback" not in result.stderr and result.stderr.startswith(f"{name}.py: "), result.stderr
    return result


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")  # empty: no ~/.cache/minigrad


# ----- a bad option: exit 2, one paragraph, nothing printed on stdout ----------------------------

@pytest.mark.parametrize("name, args, message", [
    ("benchmark", ["--batch-sizes", "8", "0"], "--batch-sizes: expected a positive integer, got '0'"),
    ("profile_step", ["--steps", "0"], "--steps: expected a positive integer, got '0'"),
    ("profile_step", ["--model", "resnet"], "--model: invalid choice: 'resnet'"),
    ("bn_ablation", ["--eval-every", "0"], "--eval-every: expected a positive integer, got '0'"),
    ("bn_ablation", ["--lrs", "1e-3", "nan"], "--lrs: expected a finite number"),
    ("torch_reference", ["mlp_bn", "--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
    ("torch_reference", ["mlp_bn", "--resume", "--out", "x"], "--resume: torch_reference.py always trains"),
    ("torch_reference", ["mlp_bn", "--image-size", "64"], "--image-size is for the Dogs vs. Cats models"),
    ("gpu_check", ["--dry-run", "--cifar", "nowhere"], "--cifar nowhere: no CIFAR-10 there"),
    ("cupy_names", ["--out", "x.json"], "unrecognized arguments: --out x.json"),
])
def test_a_bad_option_is_refused_in_one_paragraph_before_any_work(tmp_path, name, args, message):
    result = script(name, *args, home=tmp_path, check=2)
    assert message in result.stderr and result.stdout == ""
    assert os.listdir(tmp_path) == []  # no output folder made (bn_ablation's default --out is runs/ here)


@pytest.mark.parametrize("name, argv, message", [
    ("benchmark", ["--repeats", "0"], "--repeats: expected a positive integer"),
    ("benchmark", ["--pause", "-1"], "--pause: expected a non-negative number of seconds"),
    ("benchmark", ["--device", "gpu"], "--device: expected cpu, cuda or cuda:N, got 'gpu'"),
    ("benchmark", ["--device", "cuda:1"], "--device cuda:1: benchmark.py times the first GPU only"),
    ("benchmark", ["--models", "resnet"], "--models: invalid choice: 'resnet'"),
    ("profile_step", ["--batch-size", "-1"], "--batch-size: expected a positive integer, got '-1'"),
    ("bn_ablation", ["--models", "resnet"], "--models: invalid choice: 'resnet'"),
    ("bn_ablation", ["--steps", "0"], "--steps: expected a positive integer"),
    ("bn_ablation", ["--test-limit", "0"], "--test-limit: expected a positive integer"),
    ("bn_ablation", ["--seed", "-1"], "--seed: expected a non-negative integer"),
    ("torch_reference", ["resnet"], "invalid choice: 'resnet'"),
    ("gpu_check", ["--epochs", "3"], "unrecognized arguments: --epochs 3"),
])
def test_main_raises_a_usage_error_in_process(name, argv, message):
    """Called in process (as the other tests call main), a bad option is a UsageError, not SystemExit."""
    with pytest.raises(cli.UsageError, match=message) as error:
        load_script(name).main(argv)
    assert error.value.status == 2


# ----- missing data, unwritable outputs: exit 1, before any work ---------------------------------

def test_bn_ablation_refuses_a_missing_data_dir_before_any_work(home, tmp_path):
    result = script("bn_ablation", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "out", home=home, check=1)
    assert f"--data-dir {tmp_path / 'nowhere'}: no such folder" in result.stderr
    assert not (tmp_path / "out").exists() and result.stdout == ""


def test_bn_ablation_loads_every_model_data_before_the_first_run(home, tmp_path):
    """MNIST there, CIFAR-10 not: refused before mnist_bn's runs, not after them."""
    os.makedirs(tmp_path / "data")
    os.symlink(MNIST.SAMPLE_FOLDER, tmp_path / "data" / "mnist")
    result = script("bn_ablation", "--models", "mnist_bn", "cifar_bn", "--data-dir", tmp_path / "data",
                    "--out", tmp_path / "out", "--steps", 1, home=home, check=1)
    assert "loading the cifar10 training data for cifar_bn" in result.stderr
    assert str(tmp_path / "data" / "cifar-10-batches-py") in result.stderr
    assert "final test accuracy" not in result.stdout and not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("name, args, message", [
    ("bn_ablation", ["--out", "{blocker}/out"], "cannot write the run's outputs into --out"),
    ("benchmark", ["--json", "{blocker}/bench.json"], "--json {blocker}/bench.json: cannot write it"),
    ("gpu_check", ["--dry-run", "--mnist", MNIST.SAMPLE_FOLDER, "--out", "{blocker}/out"],
     "cannot write the run's outputs into --out"),
])
def test_an_output_that_cannot_be_written_is_found_before_any_work(home, tmp_path, name, args, message):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = script(name, *[arg.format(blocker=blocker) for arg in args], home=home, check=1)
    assert message.format(blocker=blocker) in result.stderr
    assert result.stdout == ""  # no timing, no training run, no gpu_check step


def test_debug_shows_the_traceback_once(home, tmp_path):
    result = script("bn_ablation", "--data-dir", tmp_path / "nowhere", "--debug", home=home, check=1)
    assert result.stderr.count("Traceback") == 1 and "DataError" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"bn_ablation.py: --data-dir {tmp_path / 'nowhere'}: no such folder"


# ----- what is missing on the machine --------------------------------------------------------

def test_torch_reference_without_pytorch_says_so(home, tmp_path):
    hidden = tmp_path / "no-torch"  # a torch package that fails to import, as if none were installed
    (hidden / "torch").mkdir(parents=True)
    (hidden / "torch" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result = script("torch_reference", "mlp_bn", "--epochs", 1, "--out", tmp_path / "run", home=home, check=1,
                    pythonpath=hidden)
    assert "PyTorch is not installed (hidden by the test)" in result.stderr and "pip install torch" in result.stderr
    assert not (tmp_path / "run").exists() and result.stdout == ""


def test_cupy_names_without_cupy_or_with_the_stand_in(monkeypatch, tmp_path, capsys):
    """In process, its OUT moved aside (a run that did write would replace tests/cupy14_names.json)."""
    cupy_names = load_script("cupy_names")
    monkeypatch.setattr(cupy_names, "OUT", str(tmp_path / "names.json"))
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    assert cli.run(cupy_names.main, []) == 1
    assert "needs the real CuPy 14 wheel" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(_standin=True))
    assert cli.run(cupy_names.main, []) == 1
    assert "this is the stand-in" in capsys.readouterr().err
    assert not (tmp_path / "names.json").exists()
