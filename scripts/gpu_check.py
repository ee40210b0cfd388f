"""The one command to run on a machine with one NVIDIA GPU: test, train and time minigrad there, and keep the record.

For the lent GPU machine (Python 3.12, CuPy 14 ``cupy-cuda13x``, PyTorch with
CUDA, no internet), where a command may run 8 minutes; from the repository root:

    python scripts/gpu_check.py --out $OUT         # on the GPU machine: 8 minutes at most
    python scripts/gpu_check.py --dry-run --out /tmp/check   # anywhere, on the CuPy stand-in: tiny, under a minute

Each step runs in a child process with its own time limit (``BUDGETS``), so a
step that hangs or fails is recorded and the others still run:

1. versions: GPU, driver, CUDA runtime, CuPy, NumPy, PyTorch (and its CUDA), Python, git commit;
2. the GPU tests, tests/test_gpu.py and tests/test_cuda_kernels.py, on real CuPy (MINIGRAD_TEST_CUPY=real);
3. training (scripts/train.py --device cuda): mnist_bn 5 epochs, cifar_bn 1, catsdogs_wide 1 at 64 x 64;
4. scripts/benchmark.py --device cuda: mnist_bn at batch 64 and 1024 (and the single ops), cifar_bn at 64.

``--dry-run`` takes the same steps on the stand-in (PYTHONPATH=tests/standin,
MINIGRAD_TEST_CUPY=standin): a subset of the tests, one epoch of 256 images,
one benchmark run at batch 8. Exit status: 1 if a step failed or ran out of
time or the output folder cannot be written, 2 for a bad option or a missing
data folder (one line on stderr; ``--debug`` adds the traceback).

The output folder (``--out``; default $OUT when set, else runs/gpu_check)
holds 7 files, all at its top, since the device tool brings back 8 at most:
summary.json (versions, each step's status and seconds, test counts,
per-epoch seconds and accuracies, benchmark ratios; rewritten after every
step), gpu_tests.log, train.log, train_metrics.json, benchmark.log,
benchmark_mnist_bn.json, benchmark_cifar_bn.json. The training runs' own
folders (checkpoints, curves) go to a temporary folder, deleted at the end.

Data: ../shared does not travel to the GPU machine. Copy the data sets into
the repository's data/ (MNIST at least, as data/mnist), an ignored folder,
and name it in the device tool's carry:

    echo /data/ >> .git/info/exclude; mkdir -p data/dogs-vs-cats
    cp -r ../shared/data/mnist ../shared/data/cifar-10-batches-py data/
    cp -r ../shared/data/dogs-vs-cats/smallData data/dogs-vs-cats/     # carry: ["data"]

All three with the repository make about 62 of the 64 MiB that may travel;
a data set other than MNIST that is not found is skipped, and recorded so.
--mnist, --cifar and --dogs-vs-cats name other folders.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

try:
    from models import cli, training
except ImportError:  # minigrad not installed (a bare GPU machine): say how to run from the checkout
    sys.exit("gpu_check.py: minigrad is not installed here; run it from the repository root as\n"
             "  PYTHONPATH=. python scripts/gpu_check.py ...   (or pip install -e . first)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = os.path.join(ROOT, "tests", "standin")
TOTAL_SECONDS = 470  # no step runs past this, so the whole check ends within 8 minutes
BUDGETS = {"versions": 30, "gpu_tests": 180, "train_mnist_bn": 90, "train_cifar_bn": 40,  # seconds; sum 460
           "train_catsdogs_wide": 40, "benchmark_mnist_bn": 50, "benchmark_cifar_bn": 30}
# option: (folder under data/ or ../shared/data/, a file or folder it must hold, what it is)
DATA = {"mnist": ("mnist", "train-images-idx3-ubyte", "MNIST"),
        "cifar": ("cifar-10-batches-py", "data_batch_1", "CIFAR-10"),
        "dogs_vs_cats": (os.path.join("dogs-vs-cats", "smallData"), "train", "Dogs vs. Cats")}


def cuda_version(number):
    return f"{number // 1000}.{number % 1000 // 10}"  # 13000 -> "13.0"


def write_versions(path):
    """Save this machine's versions as JSON (run in a child process: a broken CUDA may hang or crash it)."""
    import platform
    import numpy
    info = {"python": platform.python_version(), "numpy": numpy.__version__, "torch": None}
    try:
        try:
            import torch
            info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                        torch_sees_gpu=torch.cuda.is_available())
        except ImportError:
            pass
        import cupy
        runtime = cupy.cuda.runtime
        info.update(cupy=cupy.__version__, gpu=runtime.getDeviceProperties(0)["name"].decode(),
                    cuda_runtime=cuda_version(runtime.runtimeGetVersion()),
                    cuda_driver=cuda_version(runtime.driverGetVersion()))
    finally:  # what was found, even when CuPy fails (its error goes to the step's log)
        with open(path, "w") as file:
            json.dump(info, file)


def output_of(command):
    """A short command's output, or None where it fails (no git, no nvidia-smi)."""
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.rstrip() if result.returncode == 0 else None


def find_data(option, given):
    """The folder for one data set: ``given`` (or its subfolder of that name), else data/, else ../shared/data."""
    folder, marker, what = DATA[option]
    if given is not None:
        candidates = [given, os.path.join(given, os.path.basename(folder))]
    else:
        candidates = [os.path.join(ROOT, "data", folder), os.path.join(ROOT, "..", "shared", "data", folder)]
    for candidate in candidates:
        if any(os.path.exists(os.path.join(candidate, marker + ending)) for ending in ("", ".gz")):
            return os.path.abspath(candidate)
    if given is not None:
        raise cli.UsageError(f"--{option.replace('_', '-')} {given}: no {what} there (no {marker} in it)")
    if option == "mnist":
        raise cli.UsageError(f"no MNIST in data/{folder} or ../shared/data/{folder}: "
                             "copy it into data/mnist in the repository, or pass --mnist DIR")
    return None


def run_step(name, command, log_path, env, deadline):
    """Run one step, its output appended to ``log_path``, within its budget; returns its record."""
    seconds = min(BUDGETS[name], deadline - time.monotonic())
    record = {"command": shlex.join(command), "limit_s": round(seconds)}
    if seconds < 5:  # the check's TOTAL_SECONDS are spent
        print(f"{name}: not run, no time left", flush=True)
        return record | {"status": "timeout", "seconds": 0, "reason": "not started: no time left"}
    start = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n=== {name}: {record['command']}\n")
        log.flush()
        begin = log.tell()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            process.wait(timeout=seconds)
            record["status"] = "ok" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            record["status"] = "timeout"
            log.write(f"\n=== {name}: stopped after its {seconds:.0f} s\n")
        finally:  # timed out, or Ctrl-C: stop it and whatever it started
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    record.update(returncode=process.returncode, seconds=round(time.monotonic() - start, 1))
    if record["status"] != "ok":  # the end of this step's output, for summary.json
        with open(log_path, "rb") as log:
            log.seek(begin)
            record["log_tail"] = log.read().decode(errors="replace").splitlines()[-15:]
    print(f"{name}: {record['status']} in {record['seconds']} s", flush=True)
    return record


def count_tests(log_path):
    """pytest's closing counts, e.g. {"passed": 127, "failed": 1}, from the last line that has them."""
    with open(log_path) as log:
        for line in reversed(log.read().splitlines()):
            counts = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)", line)
            if counts and re.search(r" in [\d.]+s", line):
                return {kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in counts}
    return {}


def read_json(path):
    if not os.path.exists(path):  # the step failed before writing it
        return {}
    with open(path) as file:
        return json.load(file)


def training_summary(metrics):
    """Per epoch: seconds, images/s, train and test accuracy, from train.py's metrics.json."""
    epochs = metrics.get("epochs", [])
    return {"epoch_seconds": [round(row["seconds"], 2) for row in epochs],
            "images_per_second": [round(row["images_per_second"]) for row in epochs],
            "train_accuracy": [row["train_accuracy"] for row in epochs],
            "test_accuracy": [row["test_accuracy"] for row in epochs]}


def benchmark_summary(report):
    """The GPU, whether PyTorch was timed (and why not), TF32, and each case's times and ratios."""
    if not report:
        return {}
    keys = ("gpu", "torch_timed", "torch_not_timed_because", "minigrad_tf32", "torch_tf32")
    environment = {key: report["environment"].get(key) for key in keys}
    keys = ("case", "batch_size", "minigrad_ms", "torch_ms", "ratio", "first_step_ratio")
    rows = [{key: round(row[key], 3) if isinstance(row[key], float) else row[key] for key in keys}
            for row in report["results"]]
    return environment | {"rows": rows}


def parse_args(argv):
    parser = cli.Parser(prog="gpu_check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", metavar="DIR",
                        default=os.environ.get("OUT") or os.path.join(ROOT, "runs", "gpu_check"),
                        help="output folder (default: $OUT when set, else runs/gpu_check)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same steps, tiny and fast, on the CuPy stand-in (no GPU needed)")
    parser.add_argument("--mnist", metavar="DIR", help="MNIST (default: data/mnist, else ../shared/data/mnist)")
    parser.add_argument("--cifar", metavar="DIR", help="CIFAR-10 (default: data/cifar-10-batches-py, "
                                                      "else ../shared/data/cifar-10-batches-py)")
    parser.add_argument("--dogs-vs-cats", metavar="DIR",
                        help="Dogs vs. Cats, with train/ and validation/ (default: data/dogs-vs-cats/smallData, "
                             "else ../shared/data/dogs-vs-cats/smallData)")
    parser.add_argument("--write-versions", help=argparse.SUPPRESS)  # the versions step's child process
    args = parser.parse_args(argv)
    if args.write_versions:
        return args
    for option in DATA:
        setattr(args, option, find_data(option, getattr(args, option)))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.write_versions:
        return write_versions(args.write_versions)
    started, deadline = time.monotonic(), time.monotonic() + TOTAL_SECONDS
    out, python, dry = os.path.abspath(args.out), sys.executable, args.dry_run
    training.check_writable(out)
    logs = {name: os.path.join(out, name + ".log") for name in ("gpu_tests", "train", "benchmark")}
    for path in logs.values():
        open(path, "w").close()
    for model in ("mnist_bn", "cifar_bn"):  # a benchmark that fails must not leave the last run's numbers
        if os.path.exists(os.path.join(out, f"benchmark_{model}.json")):
            os.remove(os.path.join(out, f"benchmark_{model}.json"))
    env = dict(os.environ, MINIGRAD_TEST_CUPY="standin" if dry else "real", PYTHONUNBUFFERED="1")
    # the steps run scripts/*.py, whose own folder is all Python adds: the checkout goes on the path too
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [STANDIN if dry else None, ROOT, env.get("PYTHONPATH")]))
    summary = {"dry_run": dry, "date": datetime.datetime.now().isoformat(timespec="seconds"), "out": out,
               "data": {option: getattr(args, option) for option in DATA}, "versions": {}, "steps": {}}
    train_metrics = {}

    def keep(name, step):
        """Record a step; summary.json (and train_metrics.json) are rewritten after every step."""
        summary["steps"][name] = step
        summary["failed_steps"] = [other for other, record in summary["steps"].items()
                                   if record["status"] in ("failed", "timeout")]
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        for file_name, content in (("summary.json", summary), ("train_metrics.json", train_metrics)):
            with open(os.path.join(out, file_name), "w") as file:
                json.dump(content, file, indent=1)

    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        # 1. versions, in a child process, then what git and nvidia-smi say
        versions_path = os.path.join(work, "versions.json")
        step = run_step("versions", [python, __file__, "--write-versions", versions_path],
                        os.path.join(work, "versions.log"), env, deadline)
        git_changes = output_of(["git", "status", "--porcelain", "--untracked-files=no"])
        summary["versions"] = read_json(versions_path) | {
            "nvidia_smi": output_of(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                     "--format=csv,noheader"]),
            "git_commit": output_of(["git", "rev-parse", "HEAD"]),
            "git_changes": git_changes.splitlines() if git_changes else []}
        print(json.dumps(summary["versions"]), flush=True)
        keep("versions", step)

        # 2. the GPU tests
        command = [python, "-m", "pytest", "-q", "tests/test_gpu.py", "tests/test_cuda_kernels.py"]
        step = run_step("gpu_tests", command + (["-k", "mnist_bn or adam"] if dry else []), logs["gpu_tests"],
                        env, deadline)
        keep("gpu_tests", step | {"counts": count_tests(logs["gpu_tests"])})

        # 3. training; the runs' own folders stay in the temporary folder
        for model, data_dir, epochs, extra in (("mnist_bn", args.mnist, 5, []), ("cifar_bn", args.cifar, 1, []),
                                               ("catsdogs_wide", args.dogs_vs_cats, 1, ["--image-size", "64"])):
            if data_dir is None:
                print(f"train_{model}: skipped, no data", flush=True)
                keep(f"train_{model}", {"status": "skipped", "reason": "its data set was not found"})
                continue
            run_out = os.path.join(work, model)
            command = [python, "scripts/train.py", model, "--device", "cuda", "--data-dir", data_dir,
                       "--epochs", str(1 if dry else epochs), "--out", run_out, "--quiet", *extra]
            step = run_step(f"train_{model}", command + (["--limit", "256", "--test-limit", "256"] if dry else []),
                            logs["train"], env, deadline)
            train_metrics[model] = read_json(os.path.join(run_out, "metrics.json"))
            keep(f"train_{model}", step | training_summary(train_metrics[model]))

    # 4. the benchmark, minigrad against PyTorch
    timing = ["--repeats", "1", "--warmup", "0", "--pause", "0", "--steps-per-run", "2"] if dry else \
        ["--repeats", "10", "--warmup", "2", "--pause", "0.2"]
    for model, batches, ops in (("mnist_bn", ["64", "1024"], True), ("cifar_bn", ["64"], False)):
        json_path = os.path.join(out, f"benchmark_{model}.json")
        command = [python, "scripts/benchmark.py", "--device", "cuda", "--models", model,
                   "--batch-sizes", *(["8"] if dry else batches), *timing, "--json", json_path]
        if dry or not ops:
            command.append("--no-ops")
        step = run_step(f"benchmark_{model}", command, logs["benchmark"], env, deadline)
        keep(f"benchmark_{model}", step | benchmark_summary(read_json(json_path)))

    failed = summary["failed_steps"]
    print(f"\nsummary.json:\n{json.dumps(summary, indent=1)}")
    print(f"\ngpu_check: {len(summary['steps']) - len(failed)} of {len(summary['steps'])} steps ok or skipped"
          f"{', failed: ' + ', '.join(failed) if failed else ''}; {summary['wall_seconds']} s; output in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
