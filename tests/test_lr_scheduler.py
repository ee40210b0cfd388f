"""mg.optim.lr_scheduler: the closed forms, PyTorch's values step by step, resuming, and the errors."""
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR

BASE_LRS = (0.1, 0.37, 1.0)  # one parameter group per rate


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def groups_of(make_param, base_lrs=BASE_LRS):
    return [{"params": [make_param()], "lr": lr} for lr in base_lrs]


def sgd(base_lrs=BASE_LRS, **options):
    return mg.optim.SGD(groups_of(lambda: mg.tensor(np.zeros(3), requires_grad=True), base_lrs), lr=0.5, **options)


def torch_sgd(torch, base_lrs=BASE_LRS):
    return torch.optim.SGD(groups_of(lambda: torch.zeros(3, dtype=torch.float64, requires_grad=True), base_lrs), lr=0.5)


def schedule(scheduler, steps):
    """get_last_lr() after building and after each of ``steps`` steps: an array (steps + 1, groups)."""
    lrs = [scheduler.get_last_lr()]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return np.array(lrs)


def cosine(base_lr, eta_min, T_max, epoch):
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2


# ----- the formulas, without PyTorch ------------------------------------------------------------

def test_step_lr_is_base_times_gamma_to_the_epoch_over_step_size():
    lrs = schedule(StepLR(sgd(), step_size=3, gamma=0.5), 20)
    expected = [[lr * 0.5 ** (epoch // 3) for lr in BASE_LRS] for epoch in range(21)]
    np.testing.assert_array_equal(lrs, expected)
    assert lrs[2].tolist() == list(BASE_LRS) and lrs[3].tolist() == [lr / 2 for lr in BASE_LRS]


@pytest.mark.parametrize("T_max, eta_min", [(10, 0.0), (7, 0.01), (1, 0.05)])
def test_cosine_follows_the_half_cosine_and_goes_back_up_past_T_max(T_max, eta_min):
    steps = 4 * T_max + 3
    lrs = schedule(CosineAnnealingLR(sgd(), T_max=T_max, eta_min=eta_min), steps)
    expected = [[cosine(lr, eta_min, T_max, epoch) for lr in BASE_LRS] for epoch in range(steps + 1)]
    np.testing.assert_array_equal(lrs, expected)
    assert lrs[T_max].tolist() == [eta_min] * 3  # cos(pi) = -1 exactly: the bottom is eta_min itself
    np.testing.assert_allclose(lrs[2 * T_max], BASE_LRS, rtol=1e-15)  # back up at 2 T_max
    np.testing.assert_allclose(lrs[T_max + 1:2 * T_max + 1], lrs[T_max - 1::-1], rtol=1e-14)  # mirrored
    np.testing.assert_allclose(lrs[2 * T_max:], lrs[:steps + 1 - 2 * T_max], rtol=1e-14)  # period 2 T_max
    if T_max > 1:
        assert np.all(np.diff(lrs[:T_max + 1], axis=0) < 0)
        assert np.all(np.diff(lrs[T_max:2 * T_max + 1], axis=0) > 0)


def test_building_sets_initial_lr_and_the_optimizer_steps_with_the_scheduled_lr():
    weight = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    optimizer = mg.optim.SGD([weight], lr=0.2)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.5)
    assert optimizer.param_groups[0]["initial_lr"] == 0.2 and scheduler.base_lrs == [0.2]
    assert scheduler.last_epoch == 0 and scheduler.get_last_lr() == [0.2]
    expected = np.array([1.0, 2.0])
    for lr in (0.2, 0.1, 0.05):
        weight.grad = mg.tensor(np.array([1.0, -1.0]))
        optimizer.step()
        expected -= lr * np.array([1.0, -1.0])
        scheduler.step()
    np.testing.assert_array_equal(weight.numpy(), expected)
    assert optimizer.param_groups[0]["lr"] == 0.025 and scheduler.last_epoch == 3


def test_get_last_lr_is_a_copy():
    scheduler = StepLR(sgd(), step_size=2)
    scheduler.get_last_lr()[0] = 123.0
    assert scheduler.get_last_lr() == list(BASE_LRS)


def test_a_second_scheduler_keeps_the_first_ones_initial_lr():
    optimizer = sgd()
    StepLR(optimizer, step_size=1, gamma=0.5).step()
    second = CosineAnnealingLR(optimizer, T_max=4)
    assert second.base_lrs == list(BASE_LRS)  # as PyTorch: initial_lr is set once, by the first


def test_last_epoch_resumes_at_the_next_epoch():
    reference = schedule(CosineAnnealingLR(sgd(), T_max=9, eta_min=0.02), 25)
    optimizer = sgd()
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    resumed = CosineAnnealingLR(optimizer, T_max=9, eta_min=0.02, last_epoch=5)
    assert resumed.last_epoch == 6
    np.testing.assert_array_equal(schedule(resumed, 19), reference[6:])


# ----- against torch.optim.lr_scheduler ---------------------------------------------------------

def both(torch, make, make_torch, steps, base_lrs=BASE_LRS):
    return schedule(make(sgd(base_lrs)), steps), schedule(make_torch(torch_sgd(torch, base_lrs)), steps)


@pytest.mark.parametrize("step_size, gamma", [(1, 0.9), (3, 0.5), (30, 0.1), (7, 1.05)])
def test_step_lr_matches_torch(torch, step_size, gamma):
    mine, theirs = both(torch, lambda o: StepLR(o, step_size, gamma),
                        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size, gamma), 400)
    np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize("T_max, eta_min", [(1, 0.0), (2, 0.0), (10, 0.0), (10, 0.05), (37, 0.001), (100, 0.2)])
def test_cosine_matches_torch_also_past_T_max(torch, T_max, eta_min):
    steps = max(500, 3 * T_max + 5)  # several periods: torch's recursion goes back up past T_max too
    mine, theirs = both(torch, lambda o: CosineAnnealingLR(o, T_max, eta_min),
                        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max, eta_min), steps)
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mine[2 * T_max], BASE_LRS, rtol=1e-13)  # back at base_lr after 2 T_max


@pytest.mark.parametrize("name, arguments", [("StepLR", (4, 0.3)), ("CosineAnnealingLR", (12, 0.01))])
def test_the_values_are_torchs_closed_form_bit_for_bit(torch, name, arguments):
    mine = schedule(getattr(mg.optim.lr_scheduler, name)(sgd(), *arguments), 60)
    theirs = getattr(torch.optim.lr_scheduler, name)(torch_sgd(torch), *arguments)
    if not hasattr(theirs, "_get_closed_form_lr"):
        pytest.skip("this PyTorch has no _get_closed_form_lr")
    for epoch in range(61):
        theirs.last_epoch = epoch
        assert mine[epoch].tolist() == theirs._get_closed_form_lr(), epoch


def test_adam_with_a_cosine_schedule_trains_as_torch(torch):
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(5), rng.standard_normal((40, 5))
    weight = mg.tensor(start.copy(), requires_grad=True)
    optimizer = mg.optim.Adam([weight], lr=0.05)
    scheduler = CosineAnnealingLR(optimizer, T_max=15, eta_min=1e-3)
    torch_weight = torch.tensor(start.copy(), requires_grad=True)
    torch_optimizer = torch.optim.Adam([torch_weight], lr=0.05, foreach=False)
    torch_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(torch_optimizer, T_max=15, eta_min=1e-3)
    for grad in grads:
        weight.grad, torch_weight.grad = mg.tensor(grad), torch.tensor(grad)
        optimizer.step()
        torch_optimizer.step()
        scheduler.step()
        torch_scheduler.step()
    np.testing.assert_allclose(weight.numpy(), torch_weight.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, arguments", [("StepLR", (4, 0.3)), ("CosineAnnealingLR", (12, 0.01))])
def test_state_dict_has_torchs_keys_and_a_torch_state_dict_loads(torch, name, arguments):
    mine = getattr(mg.optim.lr_scheduler, name)(sgd(), *arguments)
    theirs = getattr(torch.optim.lr_scheduler, name)(torch_sgd(torch), *arguments)
    for _ in range(9):
        theirs.optimizer.step()
        theirs.step()
    assert set(mine.state_dict()) <= set(theirs.state_dict())
    mine.load_state_dict(theirs.state_dict())
    assert mine.last_epoch == 9 and mine.get_last_lr() == theirs.get_last_lr()
    np.testing.assert_allclose(schedule(mine, 30)[1:], schedule(theirs, 30)[1:], rtol=0, atol=1e-12)


def test_step_lr_last_epoch_matches_torch(torch):
    optimizer, torch_optimizer = sgd(), torch_sgd(torch)
    for group in optimizer.param_groups + torch_optimizer.param_groups:
        # a restart after epoch 4: the optimizer's lr as StepLR(step_size=3, gamma=0.5) left it
        group["initial_lr"], group["lr"] = group["lr"], group["lr"] * 0.5 ** (4 // 3)
    mine = schedule(StepLR(optimizer, 3, 0.5, last_epoch=4), 20)
    theirs = schedule(torch.optim.lr_scheduler.StepLR(torch_optimizer, 3, 0.5, last_epoch=4), 20)
    np.testing.assert_allclose(mine, theirs, rtol=1e-14, atol=0)


# ----- saving and resuming ----------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda o: StepLR(o, 5, 0.5), lambda o: CosineAnnealingLR(o, 8, 0.01)])
def test_a_state_dict_round_trip_resumes_identically(tmp_path, make):
    rng = np.random.default_rng(3)
    grads = rng.standard_normal((30, len(BASE_LRS), 3))

    def train(optimizer, scheduler, steps):
        for grad in steps:
            for group, g in zip(optimizer.param_groups, grad):
                group["params"][0].grad = mg.tensor(g)
            optimizer.step()
            scheduler.step()
        return [group["params"][0].numpy() for group in optimizer.param_groups], scheduler.get_last_lr()

    optimizer = sgd(momentum=0.9)
    scheduler = make(optimizer)
    expected = train(optimizer, scheduler, grads)

    optimizer = sgd(momentum=0.9)
    scheduler = make(optimizer)
    train(optimizer, scheduler, grads[:11])
    mg.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "weights": [group["params"][0] for group in optimizer.param_groups]}, tmp_path / "checkpoint")
    checkpoint = mg.load(tmp_path / "checkpoint")
    restarted = sgd(momentum=0.9)
    for group, weight in zip(restarted.param_groups, checkpoint["weights"]):
        group["params"][0].data[...] = weight.data
    scheduler = make(restarted)  # built before loading, as PyTorch advises: building writes the lrs
    restarted.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    assert scheduler.last_epoch == 11 and restarted.param_groups[0]["lr"] == scheduler.get_last_lr()[0]
    got = train(restarted, scheduler, grads[11:])
    for mine, theirs in zip(got[0], expected[0]):
        np.testing.assert_array_equal(mine, theirs)
    assert got[1] == expected[1]


# ----- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, error, message", [
    (lambda o: StepLR([1, 2], 3), TypeError, r"StepLR: optimizer must be a minigrad.optim optimizer .*got list"),
    (lambda o: StepLR(o, 0), ValueError, r"StepLR: step_size must be > 0, got 0"),
    (lambda o: StepLR(o, -2), ValueError, r"StepLR: step_size must be > 0, got -2"),
    (lambda o: StepLR(o, 2.5), TypeError, r"StepLR: step_size must be an integer .*float \(2.5\)"),
    (lambda o: StepLR(o, True), TypeError, r"StepLR: step_size must be an integer .*bool"),
    (lambda o: StepLR(o, 3, gamma=0), ValueError, r"StepLR: gamma must be > 0 .*got 0"),
    (lambda o: StepLR(o, 3, gamma=-0.5), ValueError, r"StepLR: gamma must be > 0 .*got -0.5"),
    (lambda o: StepLR(o, 3, gamma="0.1"), TypeError, r"StepLR: gamma must be a real number, got str"),
    (lambda o: StepLR(o, 3, gamma=float("nan")), ValueError, r"StepLR: gamma must be > 0 .*got nan"),
    (lambda o: CosineAnnealingLR(o, 0), ValueError, r"CosineAnnealingLR: T_max must be > 0, got 0"),
    (lambda o: CosineAnnealingLR(o, -5), ValueError, r"CosineAnnealingLR: T_max must be > 0, got -5"),
    (lambda o: CosineAnnealingLR(o, 10.0), TypeError, r"CosineAnnealingLR: T_max must be an integer .*float"),
    (lambda o: CosineAnnealingLR(o, 10, eta_min=-0.1), ValueError,
     r"CosineAnnealingLR: eta_min must be >= 0 .*got -0.1"),
    (lambda o: CosineAnnealingLR(o, 10, eta_min=None), TypeError,
     r"CosineAnnealingLR: eta_min must be a real number, got NoneType"),
    (lambda o: CosineAnnealingLR(o, 10, last_epoch=-2), ValueError,
     r"CosineAnnealingLR: last_epoch must be >= -1 .*got -2"),
    (lambda o: StepLR(o, 3, last_epoch=2.0), TypeError, r"StepLR: last_epoch must be an integer, got float \(2.0\)"),
    (lambda o: StepLR(o, 3, last_epoch=4), KeyError, r"StepLR: param_groups\[0\] has no 'initial_lr'"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make(sgd())


def test_a_torch_optimizer_is_refused(torch):
    with pytest.raises(TypeError, match=r"CosineAnnealingLR: optimizer must be .*got SGD"):
        CosineAnnealingLR(torch_sgd(torch), 10)


def test_the_base_class_leaves_the_formula_to_subclasses():
    with pytest.raises(NotImplementedError):
        LRScheduler(sgd())


def test_a_group_added_after_building_is_an_error_at_step():
    optimizer = sgd()
    scheduler = StepLR(optimizer, 2)
    optimizer.add_param_group({"params": [mg.zeros(2, requires_grad=True)]})
    with pytest.raises(RuntimeError, match=r"StepLR.step: the optimizer has 4 parameter groups .* built for 3"):
        scheduler.step()


@pytest.mark.parametrize("change, error, message", [
    (lambda s: CosineAnnealingLR(sgd(), 5).state_dict(), ValueError,
     r"StepLR.load_state_dict: the state_dict lacks \['gamma', 'step_size'\] "
     r"and has unknown keys \['T_max', 'eta_min'\]"),
    (lambda s: {**s, "momentum": 0.9}, ValueError,
     r"StepLR.load_state_dict: the state_dict has unknown keys \['momentum'\]; is it the state_dict of another"),
    (lambda s: {**s, "base_lrs": [0.1, 0.2]}, ValueError,
     r"StepLR.load_state_dict: base_lrs must be a list of 3 numbers, one per parameter group, got \[0.1, 0.2\]"),
    (lambda s: {**s, "last_epoch": -1}, ValueError, r"StepLR.load_state_dict: last_epoch must be an integer >= 0"),
    (lambda s: {**s, "step_size": 0}, ValueError, r"StepLR: step_size must be > 0, got 0"),
    (lambda s: [s], TypeError, r"StepLR.load_state_dict: expected a dict, as state_dict\(\) returns, got list"),
])
def test_a_bad_state_dict_is_refused_and_nothing_changes(change, error, message):
    scheduler = StepLR(sgd(), 2, 0.5)
    for _ in range(3):
        scheduler.step()
    before = scheduler.state_dict()
    with pytest.raises(error, match=message):
        scheduler.load_state_dict(change(before))
    assert scheduler.state_dict() == before

