"""backend's helpers: the seeds manual_seed takes, devices, deferred checks."""
import numpy as np
import pytest

from minigrad import backend


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
