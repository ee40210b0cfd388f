"""Time minigrad against PyTorch on the seed networks, in one run, side by side.

For each model and batch size: the time of a full training step (forward,
cross-entropy, backward, Adam step) for minigrad and, alternating with it,
for the identical network in PyTorch with the same weights. Then forward +
backward of conv2d, max_pool2d and batch_norm alone. Prints a table;
``--json FILE`` also saves the numbers.

Each timed run idles half a second, then takes 5 steps back to back
(``--steps-per-run``). The time per step is the median over the runs of the
mean of the steps after the first, the way training runs its steps. The
first step after the idle is reported apart ("1st"): it is slower, for
minigrad more than for PyTorch, because the idle cores wake slowly (see
docs/performance.md).

    python scripts/benchmark.py                       # all seed models, CPU
    python scripts/benchmark.py --models mnist_bn --batch-sizes 64 256
    python scripts/benchmark.py --device cuda --json gpu.json
    python scripts/benchmark.py --steps-per-run 1    # every step cold, after the idle

PyTorch is timed where it can run: on the CPU when installed, on the GPU when
it is a CUDA build that sees one. Otherwise minigrad is timed alone, one line
says why, the PyTorch columns show "-" and their JSON fields are null. With
``--device cuda`` the header and the JSON record the GPU, the CUDA runtime and
driver, CuPy and PyTorch versions, and TF32: minigrad pins it off
(``mg.config.allow_tf32``) and the script turns it off in PyTorch too
(``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``),
so both multiply in full float32.

Threads: NumPy's BLAS uses every core unless OPENBLAS_NUM_THREADS (or
OMP_NUM_THREADS / MKL_NUM_THREADS) says otherwise; PyTorch likewise
(torch.get_num_threads()). Both counts are printed with the results.
Memory: the script calls ``mg.fast.cpu.reuse_host_memory()`` first, as the
training script does (``--no-reuse-memory`` to measure without it).
"""
import datetime
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import build, cli, torch_twin, training

try:
    import torch
except ImportError:
    torch = None

INPUT_SHAPES = {"mnist_bn": (1, 28, 28), "cifar_bn": (3, 32, 32), "mlp_bn": (20,), "catsdogs_logreg": (3, 224, 224),
                "catsdogs_wide": (3, 224, 224), "catsdogs_deep": (3, 224, 224)}
CLASSES = {"catsdogs_logreg": 2, "catsdogs_wide": 2, "catsdogs_deep": 2}  # the others have 10
DEFAULT_BATCHES = {"mnist_bn": [64, 256], "cifar_bn": [64], "mlp_bn": [32], "catsdogs_logreg": [10],
                   "catsdogs_wide": [10], "catsdogs_deep": [10]}


def median_ms(times):
    return 1000 * statistics.median(times)


def time_alternating(functions, repeats, warmup, synchronize, pause, steps_per_run=1):
    """Run each function warmup times, then repeats times in turn; per function, the seconds of every call of every run.

    A timed run calls the function ``steps_per_run`` times back to back,
    timing each call: the first starts cold, after the pause; the ones after
    it follow each other as training steps do.

    Between two timed runs the process sleeps ``pause`` seconds, untimed:
    after a matrix product OpenBLAS's threads (and PyTorch's OpenMP threads
    after its ops) keep spinning on the cores for a while, and a run started
    at once by the other framework would share the cores with them. Without
    the pause PyTorch's batch-64 mnist_bn step measured 113 ms here instead of
    the 69 ms it takes alone.
    """
    for function in functions:
        for _ in range(warmup):
            function()
    synchronize()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, runs in zip(functions, times):
            time.sleep(pause)
            run = []
            for _ in range(steps_per_run):
                start = time.perf_counter()
                function()
                synchronize()
                run.append(time.perf_counter() - start)
            runs.append(run)
    return times


def step_and_first_ms(runs):
    """(ms per step as in training, ms of the first step after the pause): medians over the runs.

    A run's time per step is the mean of its steps after the first (the
    first itself when a run has one step): training runs its steps back to back.
    """
    first = [run[0] for run in runs]
    following = [statistics.fmean(run[1:]) if len(run) > 1 else run[0] for run in runs]
    return median_ms(following), median_ms(first)


def peak_megabytes(function):
    """Peak memory NumPy allocated during one call (tracemalloc sees NumPy's buffers), in MB."""
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def why_no_torch(device):
    """Why PyTorch cannot be timed on ``device`` ("cpu" or "cuda"), or None when it can."""
    if torch is None:
        return "PyTorch is not installed: timing minigrad alone (pip install torch for the comparison)"
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else \
            f"built for CUDA {torch.version.cuda}, sees no GPU"
        return f"PyTorch {torch.__version__} has no CUDA here ({build}): timing minigrad alone"
    return None


def synchronizer(device, with_torch):
    if device == "cpu":
        return lambda: None

    def synchronize():
        import cupy
        cupy.cuda.Device().synchronize()
        if with_torch:
            torch.cuda.synchronize()
    return synchronize


def model_steps(name, batch_size, device, with_torch):
    """A training step of minigrad's model and of its PyTorch twin, on the same data and weights."""
    mg.manual_seed(0)
    model = build(name).to(device)
    optimizer = mg.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x_array = rng.standard_normal((batch_size, *INPUT_SHAPES[name])).astype(np.float32)
    y_array = rng.integers(0, CLASSES.get(name, 10), batch_size)
    x, y = mg.tensor(x_array, device=device), mg.tensor(y_array, device=device)

    def minigrad_step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if not with_torch:
        return minigrad_step, None
    torch_device = "cuda" if device.startswith("cuda") else "cpu"
    twin = torch_twin.twin(model).to(torch_device)
    twin_optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    tx, ty = torch.tensor(x_array, device=torch_device), torch.tensor(y_array, device=torch_device)

    def torch_step():
        loss = torch.nn.functional.cross_entropy(twin(tx), ty)
        twin_optimizer.zero_grad()
        loss.backward()
        twin_optimizer.step()

    return minigrad_step, torch_step


def op_cases(with_torch):
    """(name, minigrad fn, torch fn, input shapes): forward + backward of single ops."""
    def conv(x, w, b):
        return F.conv2d(x, w, b, padding=2)

    def pool(x):
        return F.max_pool2d(x, 2)

    def bn(x, g, b):
        return F.batch_norm(x, None, None, g, b, training=True)
    cases = [("conv2d 64x32x14x14, 64 5x5", conv, "conv2d", [(64, 32, 14, 14), (64, 32, 5, 5), (64,)]),
             ("max_pool2d 64x32x28x28, 2x2", pool, "max_pool2d", [(64, 32, 28, 28)]),
             ("batch_norm 64x32x28x28, train", bn, "batch_norm", [(64, 32, 28, 28), (32,), (32,)])]
    torch_fns = {}
    if with_torch:
        tf = torch.nn.functional
        torch_fns = {"conv2d": lambda x, w, b: tf.conv2d(x, w, b, padding=2),
                     "max_pool2d": lambda x: tf.max_pool2d(x, 2),
                     "batch_norm": lambda x, g, b: tf.batch_norm(x, None, None, g, b, training=True)}
    return [(label, fn, torch_fns.get(key), shapes) for label, fn, key, shapes in cases]


def op_steps(fn, torch_fn, shapes, device):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    inputs = [mg.tensor(a, device=device, requires_grad=True) for a in arrays]
    upstream = None

    def minigrad_step():
        nonlocal upstream
        out = fn(*inputs)
        if upstream is None:
            upstream = mg.ones_like(out)
        out.backward(upstream)
        for t in inputs:
            t.grad = None

    if torch_fn is None:
        return minigrad_step, None
    torch_device = "cuda" if device.startswith("cuda") else "cpu"
    twins = [torch.tensor(a, device=torch_device, requires_grad=True) for a in arrays]

    def torch_step():
        out = torch_fn(*twins)
        out.backward(torch.ones_like(out))
        for t in twins:
            t.grad = None

    return minigrad_step, torch_step


def measure(label, steps, batch_size, args, synchronize):
    minigrad_step, torch_step = steps
    functions = [minigrad_step] + ([torch_step] if torch_step else [])
    times = time_alternating(functions, args.repeats, args.warmup, synchronize, args.pause, args.steps_per_run)
    row = {"case": label, "batch_size": batch_size}
    row["minigrad_ms"], row["minigrad_first_ms"] = step_and_first_ms(times[0])
    row["minigrad_images_per_s"] = batch_size / row["minigrad_ms"] * 1000 if batch_size else None
    if args.device == "cpu":
        row["minigrad_peak_mb"] = peak_megabytes(minigrad_step)
    for key in ("torch_ms", "torch_first_ms", "torch_images_per_s", "ratio", "first_step_ratio"):
        row[key] = None  # stays null when PyTorch is not timed
    if torch_step:
        row["torch_ms"], row["torch_first_ms"] = step_and_first_ms(times[1])
        row["torch_images_per_s"] = batch_size / row["torch_ms"] * 1000 if batch_size else None
        row["ratio"] = row["minigrad_ms"] / row["torch_ms"]
        row["first_step_ratio"] = row["minigrad_first_ms"] / row["torch_first_ms"]
    return row


def print_table(rows):
    """ms per step (steps back to back, as in training) and its ratio, then the same for the first step after the pause."""
    header = f"{'case':38} {'batch':>5} {'minigrad ms':>11} {'torch ms':>9} {'ratio':>6} " \
             f"{'1st mg ms':>9} {'1st torch':>9} {'1st ratio':>9} " \
             f"{'mg img/s':>9} {'torch img/s':>11} {'mg peak MB':>10}"
    print(header)
    print("-" * len(header))

    def cell(value, width, fmt):
        return f"{value:{width}{fmt}}" if value is not None else f"{'-':>{width}}"
    for row in rows:
        print(f"{row['case']:38} {cell(row['batch_size'] or None, 5, 'd')} {cell(row['minigrad_ms'], 11, '.1f')} "
              f"{cell(row.get('torch_ms'), 9, '.1f')} {cell(row.get('ratio'), 6, '.2f')} "
              f"{cell(row['minigrad_first_ms'], 9, '.1f')} {cell(row.get('torch_first_ms'), 9, '.1f')} "
              f"{cell(row.get('first_step_ratio'), 9, '.2f')} "
              f"{cell(row.get('minigrad_images_per_s'), 9, '.0f')} {cell(row.get('torch_images_per_s'), 11, '.0f')} "
              f"{cell(row.get('minigrad_peak_mb'), 10, '.0f')}")


def cuda_version(number):
    """CUDA's version numbers as text: 12090 -> "12.9"."""
    return f"{number // 1000}.{number % 1000 // 10}"


def environment(device, no_torch_reason):
    info = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "device": device,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__ if torch else None,
            "torch_threads": torch.get_num_threads() if torch else None,
            "torch_timed": no_torch_reason is None, "torch_not_timed_because": no_torch_reason,
            "thread_env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                           if k in os.environ}}
    if device != "cpu":
        import cupy
        runtime = cupy.cuda.runtime
        info["gpu"] = runtime.getDeviceProperties(0)["name"].decode()
        info["cuda_runtime"] = cuda_version(runtime.runtimeGetVersion())
        info["cuda_driver"] = cuda_version(runtime.driverGetVersion())
        info["cupy"] = cupy.__version__
        info["torch_cuda"] = torch.version.cuda if torch else None
        info["minigrad_tf32"] = mg.config.allow_tf32
        info["torch_tf32"] = None  # not timed
        if no_torch_reason is None:
            info["torch_tf32"] = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return info


def print_header(info, args):
    if info["torch"] is None:
        torch_part = "no torch"
    elif info["torch_timed"]:
        torch_part = f"torch {info['torch']} ({info['torch_threads']} threads)"
    else:
        torch_part = f"torch {info['torch']} not timed"
    print(f"\n{info['date']}  {info['machine']}  device {args.device}  numpy {info['numpy']}  "
          f"{torch_part}  median of {args.repeats} runs"
          f" of {args.steps_per_run} step{'s' if args.steps_per_run > 1 else ''}, {args.pause} s idle before each")
    if args.device != "cpu":
        torch_versions = f", PyTorch {info['torch']} (CUDA {info['torch_cuda']})" if info["torch"] else ""
        tf32 = "ON" if info["minigrad_tf32"] else "off"
        torch_tf32 = {None: "", False: ", off in PyTorch", True: ", ON in PyTorch"}[info["torch_tf32"]]
        print(f"GPU {info['gpu']}, CUDA runtime {info['cuda_runtime']}, driver {info['cuda_driver']}, "
              f"CuPy {info['cupy']}{torch_versions}; TF32 {tf32} in minigrad{torch_tf32}")
    print("(ms/step: the steps after a run's first, back to back as in training; 1st: the first step after the idle)\n")


def check_can_write(option, path):
    """Fail now, before any timing, if the file ``path`` cannot be written (no such folder, no permission)."""
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        raise cli.DataError(f"{option} {path}: cannot write it ({error.strerror or error})") from error
    if not existed:
        os.remove(path)


def parser():
    p = cli.Parser(prog="benchmark.py", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", type=cli.device, help="cpu (the default) or cuda (the first GPU)")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_BATCHES), choices=list(DEFAULT_BATCHES))
    p.add_argument("--batch-sizes", nargs="+", type=cli.positive_int,
                   help="for every model (default: each model's own)")
    p.add_argument("--repeats", type=cli.positive_int, default=20, help="timed runs of each case (median reported)")
    p.add_argument("--warmup", type=cli.nonnegative_int, default=3)
    p.add_argument("--pause", type=cli.number(float, 0, name="a non-negative number of seconds"), default=0.5,
                   help="seconds of idle between timed runs, so one framework's spinning threads are gone")
    p.add_argument("--steps-per-run", type=cli.positive_int, default=5,
                   help="steps back to back in each timed run: the first, after the pause, is reported apart "
                        "(cold); the mean of the others is the time per step, as in training (1: cold only)")
    p.add_argument("--no-ops", action="store_true", help="skip the single-op timings")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--no-reuse-memory", action="store_true",
                   help="leave glibc's malloc thresholds alone (see mg.fast.cpu.reuse_host_memory)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.device.startswith("cuda:"):  # the synchronizer and the recorded GPU are the first one's
        raise cli.UsageError(f"--device {args.device}: benchmark.py times the first GPU only; pass --device cuda")
    if args.json:
        check_can_write("--json", args.json)
    if not args.no_reuse_memory:
        mg.fast.cpu.reuse_host_memory()
    training.check_device(args.device)  # no CuPy, no GPU: one line now, not a traceback from the first step
    no_torch_reason = why_no_torch(args.device)
    with_torch = no_torch_reason is None
    if not with_torch:
        print(no_torch_reason)
    elif args.device == "cuda":  # full float32 products, as minigrad computes them (mg.config.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print("PyTorch: TF32 turned off (torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32 = False)")
    synchronize = synchronizer(args.device, with_torch)
    rows = []
    for name in args.models:
        for batch_size in args.batch_sizes or DEFAULT_BATCHES[name]:
            rows.append(measure(f"{name} train step", model_steps(name, batch_size, args.device, with_torch),
                                batch_size, args, synchronize))
    if not args.no_ops:
        for label, fn, torch_fn, shapes in op_cases(with_torch):
            rows.append(measure(f"{label} fwd+bwd", op_steps(fn, torch_fn, shapes, args.device),
                                0, args, synchronize))
    info = environment(args.device, no_torch_reason)
    info["steps_per_run"] = args.steps_per_run
    print_header(info, args)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"environment": info, "results": rows}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
