"""backend's helpers: thread splits hand out every index once, whatever the thread count;
the OpenBLAS thread timeout; the seeds manual_seed takes."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from minigrad import backend


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100])
def test_run_on_slices_covers_the_range_once_in_consecutive_slices(monkeypatch, threads, n):
    monkeypatch.setenv("MINIGRAD_NUM_THREADS", str(threads))
    seen, lock = [], threading.Lock()

    def work(part):
        with lock:
            seen.append(part)
    backend.run_on_slices(work, n, np.zeros(1))
    assert len(seen) == max(1, min(threads, n))
    assert all(isinstance(part, slice) and part.step is None for part in seen)
    assert sorted(i for part in seen for i in range(n)[part]) == list(range(n))


def test_run_in_parallel_gives_each_item_to_one_call(monkeypatch):
    monkeypatch.setenv("MINIGRAD_NUM_THREADS", "3")
    parts, lock = [], threading.Lock()

    def work(part):
        with lock:
            parts.append(list(part))
    backend.run_in_parallel(work, "abcdefg", np.zeros(1))
    assert len(parts) == 3 and sorted(item for part in parts for item in part) == list("abcdefg")


def test_a_split_inside_a_split_runs_in_its_worker_instead_of_waiting(monkeypatch):
    """Every worker busy with an outer part must not wait for a free worker: it runs the inner parts itself."""
    monkeypatch.setenv("MINIGRAD_NUM_THREADS", "2")
    seen = []
    lock = threading.Lock()

    def outer(part):
        def inner(inner_part):
            with lock:
                seen.extend(range(100)[part][inner_part])
        backend.run_on_slices(inner, len(range(100)[part]), np.zeros(1))
    backend.run_on_slices(outer, 100, np.zeros(1))
    assert sorted(seen) == list(range(100))


@pytest.mark.parametrize("preset, expected", [(None, "20"), ("7", "7")])
def test_importing_minigrad_sets_openblas_thread_timeout_unless_set(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    code = "import os, minigrad; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "predict.py", "benchmark.py", "profile_step.py",
                                    "bn_ablation.py"])
def test_scripts_import_minigrad_before_numpy(script):
    # OpenBLAS reads the timeout when NumPy loads it: a script that imports NumPy first loses it
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", script)
    imports = [line.split("#")[0].split()[1] for line in open(path) if line.startswith(("import ", "from "))]
    first = next(name for name in imports if name.split(".")[0] in ("minigrad", "models", "numpy"))
    assert first.split(".")[0] in ("minigrad", "models")  # models imports minigrad first


@pytest.fixture
def own_seed(monkeypatch):
    """The seed and generators as they were before the test, back after it."""
    monkeypatch.setattr(backend, "_seed", backend._seed)
    monkeypatch.setattr(backend, "_generators", {})


@pytest.mark.parametrize("seed, type_name", [("abc", "str"), (2.5, "float"), (1.0, "float"), (None, "NoneType"),
                                             (True, "bool"), (np.float64(3), "float64")])
def test_manual_seed_refuses_what_is_not_an_integer_naming_the_type(seed, type_name, own_seed):
    with pytest.raises(TypeError, match=f"manual_seed: seed must be an integer, got {type_name}"):
        backend.manual_seed(seed)


@pytest.mark.parametrize("seed", [2 ** 64, -2 ** 63 - 1])
def test_manual_seed_range_is_pytorchs(seed, own_seed):
    with pytest.raises(ValueError, match=r"manual_seed: seed must be in \[-2\*\*63, 2\*\*64\)"):
        backend.manual_seed(seed)


def test_a_negative_seed_wraps_as_in_pytorch(own_seed):
    """-1 seeds as 2**64 - 1 does, on both generators (torch.manual_seed(-1).initial_seed() is 2**64 - 1)."""
    draws = []
    for seed in [-1, 2 ** 64 - 1, np.int64(-1)]:
        backend.manual_seed(seed)
        draws.append((backend.generator().random(3).tolist(), backend.rng_state()["cupy"]["seed"]))
    assert draws[0] == draws[1] == draws[2]
    assert draws[0][0] == np.random.default_rng(2 ** 64 - 1).random(3).tolist() and draws[0][1] == 2 ** 64 - 1
    backend.manual_seed(-2 ** 63)
    assert backend.rng_state()["cupy"]["seed"] == 2 ** 63
