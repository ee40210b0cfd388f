"""fast/cpu.py: thread splits hand out every index once, whatever the thread count; OpenBLAS's
thread timeout reaches OpenBLAS whether NumPy or minigrad is imported first."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad.fast import cpu


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100])
def test_run_on_slices_covers_the_range_once_in_consecutive_slices(monkeypatch, threads, n):
    monkeypatch.setattr(mg.config, "threads", threads)
    seen, lock = [], threading.Lock()

    def work(part):
        with lock:
            seen.append(part)
    cpu.run_on_slices(work, n, np.zeros(1))
    assert len(seen) == max(1, min(threads, n))
    assert all(isinstance(part, slice) and part.step is None for part in seen)
    assert sorted(i for part in seen for i in range(n)[part]) == list(range(n))


def test_run_in_parallel_gives_each_item_to_one_call(monkeypatch):
    monkeypatch.setattr(mg.config, "threads", 3)
    parts, lock = [], threading.Lock()

    def work(part):
        with lock:
            parts.append(list(part))
    cpu.run_in_parallel(work, "abcdefg", np.zeros(1))
    assert len(parts) == 3 and sorted(item for part in parts for item in part) == list("abcdefg")


def test_more_threads_asked_for_later_get_a_bigger_pool(monkeypatch):
    monkeypatch.setattr(mg.config, "threads", 2)
    cpu.run_in_parallel(lambda part: None, range(2), np.zeros(1))
    assert cpu._pool_size >= 2
    monkeypatch.setattr(mg.config, "threads", 5)
    cpu.run_in_parallel(lambda part: None, range(5), np.zeros(1))
    assert cpu._pool_size == 5 and cpu._workers._max_workers == 5


def test_a_split_inside_a_split_runs_in_its_worker_instead_of_waiting(monkeypatch):
    """Every worker busy with an outer part must not wait for a free worker: it runs the inner parts itself."""
    monkeypatch.setattr(mg.config, "threads", 2)
    seen = []
    lock = threading.Lock()

    def outer(part):
        def inner(inner_part):
            with lock:
                seen.extend(range(100)[part][inner_part])
        cpu.run_on_slices(inner, len(range(100)[part]), np.zeros(1))
    cpu.run_on_slices(outer, 100, np.zeros(1))
    assert sorted(seen) == list(range(100))


def _timeout_seen_by_openblas(first, preset=None):
    """What OpenBLAS itself reads as its thread timeout after importing ``first`` and then the other."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    order = "import numpy, minigrad" if first == "numpy" else "import minigrad, numpy"
    code = (f"{order}\nimport ctypes\nfrom minigrad.fast.cpu import openblas_libraries\n"
            "print(ctypes.CDLL(openblas_libraries().pop()).openblas_thread_timeout())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not cpu.openblas_libraries(), reason="NumPy here does not use OpenBLAS (or there is no /proc)")
@pytest.mark.parametrize("first", ["minigrad", "numpy"])
@pytest.mark.parametrize("preset, expected", [(None, "20"), ("7", "7")])
def test_openblas_gets_the_thread_timeout_whichever_is_imported_first(first, preset, expected):
    """There is no import-order rule: with NumPy imported first, minigrad makes OpenBLAS read it again."""
    assert _timeout_seen_by_openblas(first, preset) == expected
