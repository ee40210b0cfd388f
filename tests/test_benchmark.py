"""scripts/benchmark.py runs on a tiny configuration and prints a well-formed table (timings are not asserted)."""
import json
import os
import subprocess
import sys

import pytest
from scriptload import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_benchmark(*args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), *args],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_benchmark_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    stdout = run_benchmark("--models", "mlp_bn", "cifar_bn", "--batch-sizes", "4", "--repeats", "2", "--warmup", "1", "--pause", "0",
                           "--no-ops", "--json", str(out))
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case"))
    assert all(column in lines[header] for column in ("minigrad ms", "ratio", "1st ratio", "peak MB"))
    rows = [line for line in lines[header + 2:] if line.strip()]
    assert [row.split()[0] for row in rows] == ["mlp_bn", "cifar_bn"]
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["numpy"]
    for row in report["results"]:
        assert row["batch_size"] == 4 and row["minigrad_ms"] > 0 and row["minigrad_peak_mb"] >= 0
        assert row["minigrad_images_per_s"] == 4 / row["minigrad_ms"] * 1000
        if report["environment"]["torch"]:
            assert row["ratio"] == row["minigrad_ms"] / row["torch_ms"]
            assert row["first_step_ratio"] == row["minigrad_first_ms"] / row["torch_first_ms"]


@pytest.mark.parametrize("device, hide_torch", [("cuda", False), ("cpu", True)])
def test_benchmark_times_minigrad_alone_where_pytorch_cannot_run(tmp_path, gpu_env, device, hide_torch):
    """--device cuda with a CPU-only PyTorch (as here), or no PyTorch at all: minigrad alone, PyTorch's fields null."""
    env = dict(gpu_env)
    if hide_torch:  # a torch package that fails to import, as if none were installed
        (tmp_path / "torch").mkdir()
        (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--device", device,
                             "--repeats", "1", "--warmup", "0", "--models", "mnist_bn", "--batch-sizes", "8",
                             "--no-ops", "--steps-per-run", "2", "--pause", "0", "--json", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    info, (row,) = report["environment"], report["results"]
    assert row["case"] == "mnist_bn train step" and row["minigrad_ms"] > 0 and row["minigrad_first_ms"] > 0
    if device == "cuda":
        assert info["gpu"] and info["cuda_runtime"] and info["cuda_driver"] and info["cupy"]
        assert info["minigrad_tf32"] is False
    try:
        import torch
        torch_runs = not hide_torch and (device == "cpu" or torch.cuda.is_available())
    except ImportError:
        torch_runs, hide_torch = False, True  # no PyTorch here at all: the child had none either
    assert info["torch_timed"] is torch_runs
    if torch_runs:  # a CUDA PyTorch on a GPU machine: timed, with TF32 off
        assert row["torch_ms"] > 0 and row["ratio"] > 0 and info["torch_tf32"] is False
    else:
        assert all(row[key] is None for key in ("torch_ms", "torch_first_ms", "torch_images_per_s", "ratio",
                                                "first_step_ratio"))
        reason = info["torch_not_timed_because"]
        assert reason in result.stdout.splitlines()
        assert ("not installed" if hide_torch else f"PyTorch {info['torch']} has no CUDA here") in reason
        table_row = next(line for line in result.stdout.splitlines() if line.startswith("mnist_bn"))
        assert table_row.split()[5:7] == ["-", "-"]  # torch ms, ratio


def test_time_alternating_times_each_step_of_each_run():
    benchmark = load_script("benchmark")
    calls = {"a": 0, "b": 0}

    def counter(key):
        def call():
            calls[key] += 1
        return call
    times = benchmark.time_alternating([counter("a"), counter("b")], repeats=2, warmup=1,
                                       synchronize=lambda: None, pause=0, steps_per_run=3)
    assert calls == {"a": 1 + 2 * 3, "b": 1 + 2 * 3}
    assert [[len(run) for run in runs] for runs in times] == [[3, 3], [3, 3]]
    assert all(s >= 0 for runs in times for run in runs for s in run)


def test_step_time_is_the_steps_after_the_first_and_the_first_is_apart():
    benchmark = load_script("benchmark")
    runs = [[0.050, 0.010, 0.012], [0.070, 0.011, 0.013], [0.060, 0.030, 0.040]]
    step, first = benchmark.step_and_first_ms(runs)
    assert step == pytest.approx(12.0) and first == pytest.approx(60.0)  # medians of (11, 12, 35) and (50, 70, 60)
    assert benchmark.step_and_first_ms([[0.004], [0.002], [0.003]]) == pytest.approx((3.0, 3.0))


def test_benchmark_steps_per_run_is_recorded_and_checked(tmp_path):
    out = tmp_path / "bench.json"
    run_benchmark("--models", "mlp_bn", "--batch-sizes", "4", "--repeats", "1", "--warmup", "0", "--pause", "0",
                  "--steps-per-run", "2", "--no-ops", "--json", str(out))
    assert json.loads(out.read_text())["environment"]["steps_per_run"] == 2
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--steps-per-run", "0"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--steps-per-run: expected a positive integer, got '0'" in bad.stderr


def test_benchmark_times_single_ops():
    stdout = run_benchmark("--models", "mlp_bn", "--batch-sizes", "2", "--repeats", "1", "--warmup", "0", "--pause", "0")
    for op in ("conv2d", "max_pool2d", "batch_norm"):
        assert any(line.startswith(op) for line in stdout.splitlines()), op


def test_profile_step_prints_a_table_that_adds_up():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "profile_step.py"), "--model", "mlp_bn",
                             "--batch-size", "8", "--steps", "2"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row[0].strip() for row in rows[1:]]
    assert {"Linear", "BatchNorm", "Adam", "other"} <= set(names)
    step_ms = float(result.stdout.split(" ms per step")[0].split()[-1])
    assert abs(sum(float(row[2]) for row in rows[1:]) - step_ms) < 0.2
