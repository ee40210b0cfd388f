"""backend's thread helpers: every index is handed out exactly once, whatever the thread count."""
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
