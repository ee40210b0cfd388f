"""scripts/gpu_check.py: its dry run passes here, on the CuPy stand-in, and records what the GPU run would record."""
import json
import os
import subprocess
import sys

import pytest
from scriptload import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.py")
MNIST_FOLDERS = [os.path.join(ROOT, "data", "mnist"), os.path.join(ROOT, "..", "shared", "data", "mnist")]


def run_check(*args, timeout=30):
    env = {key: value for key, value in os.environ.items() if key not in ("OUT", "MINIGRAD_TEST_CUPY")}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


@pytest.mark.skipif(not any(os.path.isdir(folder) for folder in MNIST_FOLDERS),
                    reason="no MNIST in data/mnist or ../shared/data/mnist")
def test_dry_run_passes_and_records_versions_tests_training_and_benchmarks(tmp_path):
    result = run_check("--dry-run", "--out", str(tmp_path), timeout=600)  # 25 s alone; much more on a busy machine
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["failed_steps"] == []
    versions = summary["versions"]
    assert versions["gpu"] == "CuPy stand-in (NumPy)" and versions["cupy"] and versions["numpy"] and versions["python"]
    assert versions["cuda_runtime"] and versions["cuda_driver"] and "torch" in versions and "git_commit" in versions
    steps = summary["steps"]
    assert all(step["status"] in ("ok", "skipped") for step in steps.values()), steps
    counts = steps["gpu_tests"]["counts"]
    assert counts["passed"] > 0 and counts.get("failed", 0) == 0
    mnist = steps["train_mnist_bn"]
    assert mnist["status"] == "ok" and len(mnist["epoch_seconds"]) == 1 and mnist["epoch_seconds"][0] > 0
    assert 0 <= mnist["test_accuracy"][0] <= 1
    for model in ("mnist_bn", "cifar_bn"):
        benchmark = steps[f"benchmark_{model}"]
        assert benchmark["status"] == "ok" and benchmark["gpu"] == "CuPy stand-in (NumPy)"
        assert benchmark["rows"] and all(row["minigrad_ms"] > 0 for row in benchmark["rows"])
        assert (tmp_path / f"benchmark_{model}.json").is_file()
    # everything comes back from the device machine: at most 8 files, all at the top
    assert all(path.is_file() for path in tmp_path.iterdir()) and len(list(tmp_path.iterdir())) <= 8
    assert {"summary.json", "gpu_tests.log", "train.log"} <= {path.name for path in tmp_path.iterdir()}
    assert "passed" in (tmp_path / "gpu_tests.log").read_text()


def test_a_bad_option_is_a_usage_error():
    result = run_check("--epochs", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["gpu_check.py: unrecognized arguments: --epochs 3",
                                                  "(see gpu_check.py --help)"]


def test_a_data_folder_given_but_missing_is_one_clear_line(tmp_path):
    result = run_check("--dry-run", "--out", str(tmp_path / "out"), "--mnist", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == \
        [f"gpu_check.py: --mnist {tmp_path / 'nowhere'}: no MNIST there (no train-images-idx3-ubyte in it)"]
    assert not (tmp_path / "out").exists()


def test_without_mnist_in_data_or_shared_it_says_where_to_put_it(tmp_path, monkeypatch):
    from models import cli
    gpu_check = load_script("gpu_check")
    monkeypatch.setattr(gpu_check, "ROOT", str(tmp_path / "repo"))  # no data/ there, nor ../shared beside it
    with pytest.raises(cli.UsageError, match="copy it into data/mnist in the repository, or pass --mnist DIR") \
            as error:
        gpu_check.parse_args(["--dry-run"])
    assert error.value.status == 2
    # MNIST found, CIFAR-10 and Dogs vs. Cats not: those steps are skipped, not errors
    mnist = tmp_path / "repo" / "data" / "mnist"
    mnist.mkdir(parents=True)
    (mnist / "train-images-idx3-ubyte.gz").touch()
    args = gpu_check.parse_args(["--dry-run"])
    assert args.mnist == str(mnist) and args.cifar is None and args.dogs_vs_cats is None
