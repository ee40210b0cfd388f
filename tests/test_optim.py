"""Optimizers against torch.optim: the same model, data and steps must give the same weights.

The model is a two-layer MLP built from raw tensors, so these tests need only
the core; each case runs a few steps in minigrad and in PyTorch from the same
starting weights and compares the weights after every run.
"""
import numpy as np
import pytest

import minigrad as mg
from oracle import requires_torch, torch

SHAPES = [(8, 4), (8,), (3, 8), (3,)]  # W1, b1, W2, b2
RNG = np.random.default_rng(0)
INITIAL = [0.5 * RNG.standard_normal(shape) for shape in SHAPES]
X = RNG.standard_normal((16, 4))
Y = RNG.standard_normal((16, 3))

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
]
CASE_IDS = [f"{name}-{options}" for name, options in CASES]


def loss_of(params, x, y):
    """Mean squared error of the MLP; works on minigrad and torch tensors alike."""
    W1, b1, W2, b2 = params
    out = (x @ W1.T + b1).relu() @ W2.T + b2
    return ((out - y) ** 2).mean()


def train_minigrad(name, options, steps, dtype=np.float64, schedule=None, device=None):
    params = [mg.tensor(a.astype(dtype), device=device, requires_grad=True) for a in INITIAL]
    optimizer = getattr(mg.optim, name)(params, **options)
    x, y = mg.tensor(X.astype(dtype), device=device), mg.tensor(Y.astype(dtype), device=device)
    for step in range(steps):
        if schedule:
            schedule(optimizer, step)
        optimizer.zero_grad()
        loss_of(params, x, y).backward()
        optimizer.step()
    return params, optimizer


def train_torch(name, options, steps, dtype=np.float64, schedule=None):
    params = [torch.tensor(a.astype(dtype), requires_grad=True) for a in INITIAL]
    optimizer = getattr(torch.optim, name)(params, foreach=False, **options)
    x, y = torch.tensor(X.astype(dtype)), torch.tensor(Y.astype(dtype))
    for step in range(steps):
        if schedule:
            schedule(optimizer, step)
        optimizer.zero_grad()
        loss_of(params, x, y).backward()
        optimizer.step()
    return [p.detach().numpy() for p in params]


def assert_weights_equal(mine, theirs, rtol, atol=0.0):
    for i, (m, t) in enumerate(zip(mine, theirs)):
        assert m.dtype == t.dtype
        np.testing.assert_allclose(m.numpy(), t, rtol=rtol, atol=atol, err_msg=f"parameter {i}")


@requires_torch
@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_matches_torch_float64(name, options):
    mine, _ = train_minigrad(name, options, steps=5)
    assert_weights_equal(mine, train_torch(name, options, steps=5), rtol=1e-12, atol=1e-14)


@requires_torch
@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_matches_torch_float32(name, options):
    mine, _ = train_minigrad(name, options, steps=5, dtype=np.float32)
    assert_weights_equal(mine, train_torch(name, options, steps=5, dtype=np.float32), rtol=1e-6, atol=1e-7)


def halve_lr_each_step(optimizer, step):
    for group in optimizer.param_groups:
        group["lr"] = 0.1 * 0.5 ** step


@requires_torch
@pytest.mark.parametrize("name, options", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1))])
def test_learning_rate_schedule_matches_torch(name, options):
    mine, _ = train_minigrad(name, options, steps=5, schedule=halve_lr_each_step)
    theirs = train_torch(name, options, steps=5, schedule=halve_lr_each_step)
    assert_weights_equal(mine, theirs, rtol=1e-12, atol=1e-14)


@requires_torch
def test_param_groups_with_own_hyperparameters_match_torch():
    mine = [mg.tensor(a, requires_grad=True) for a in INITIAL]
    theirs = [torch.tensor(a, requires_grad=True) for a in INITIAL]
    optimizers = [mg.optim.SGD([{"params": mine[:2]}, {"params": mine[2:], "lr": 0.01, "momentum": 0.5}],
                               lr=0.1, momentum=0.9),
                  torch.optim.SGD([{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.01, "momentum": 0.5}],
                                  lr=0.1, momentum=0.9, foreach=False)]
    for params, optimizer, x, y in [(mine, optimizers[0], mg.tensor(X), mg.tensor(Y)),
                                    (theirs, optimizers[1], torch.tensor(X), torch.tensor(Y))]:
        for _ in range(3):
            optimizer.zero_grad()
            loss_of(params, x, y).backward()
            optimizer.step()
    assert_weights_equal(mine, [p.detach().numpy() for p in theirs], rtol=1e-12, atol=1e-14)
    assert optimizers[0].param_groups[1]["lr"] == 0.01 and optimizers[0].param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("name, options", [CASES[2], CASES[7], CASES[9]], ids=[CASE_IDS[2], CASE_IDS[7], CASE_IDS[9]])
def test_state_dict_resumes_exactly(name, options, tmp_path):
    """3 steps, checkpoint through mg.save/mg.load, a fresh optimizer, 2 more == 5 steps straight."""
    straight, _ = train_minigrad(name, options, steps=5)
    first, optimizer = train_minigrad(name, options, steps=3)
    mg.save(optimizer.state_dict(), tmp_path / "optimizer.ckpt")
    params = [mg.tensor(p.numpy(), requires_grad=True) for p in first]
    resumed = getattr(mg.optim, name)(params, lr=123.0)  # hyperparameters come from the checkpoint
    resumed.load_state_dict(mg.load(tmp_path / "optimizer.ckpt"))
    assert resumed.param_groups[0]["lr"] == options["lr"]
    for _ in range(2):
        resumed.zero_grad()
        loss_of(params, mg.tensor(X), mg.tensor(Y)).backward()
        resumed.step()
    for p, q in zip(params, straight):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_state_dict_layout_is_pytorchs_and_a_snapshot():
    params, optimizer = train_minigrad("Adam", dict(lr=0.01), steps=2)
    state = optimizer.state_dict()
    assert sorted(state) == ["param_groups", "state"]
    assert state["param_groups"] == [dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                          params=[0, 1, 2, 3])]
    assert sorted(state["state"]) == [0, 1, 2, 3]
    assert state["state"][0]["step"] == 2
    saved = state["state"][0]["exp_avg"]
    assert isinstance(saved, mg.Tensor) and saved.shape == params[0].shape
    before = saved.numpy().copy()
    optimizer.step()
    np.testing.assert_array_equal(saved.numpy(), before)


def test_load_state_dict_casts_state_to_the_parameters_dtype():
    _, optimizer = train_minigrad("SGD", dict(lr=0.1, momentum=0.9), steps=1)
    params32 = [mg.tensor(a.astype(np.float32), requires_grad=True) for a in INITIAL]
    other = mg.optim.SGD(params32, lr=0.1, momentum=0.9)
    other.load_state_dict(optimizer.state_dict())
    assert other.state[params32[0]]["momentum_buffer"].dtype == np.float32


def test_load_state_dict_errors_leave_the_optimizer_unchanged():
    params, adam = train_minigrad("Adam", dict(lr=0.01), steps=1)
    good = adam.state_dict()
    fresh = mg.optim.Adam(params, lr=0.5)
    wrong_shape = adam.state_dict()
    wrong_shape["state"][1]["exp_avg"] = mg.zeros(3, 3)
    bad = {
        "groups": {"state": {}, "param_groups": good["param_groups"] * 2},
        "holds 3 parameters": {"state": {}, "param_groups": [dict(good["param_groups"][0], params=[0, 1, 2])]},
        "has shape": wrong_shape,
        "another kind of optimizer": mg.optim.SGD(params, lr=0.1).state_dict(),
        "keys 'state' and 'param_groups'": {"state": {}},
        "parameter 7": {"state": {7: {}}, "param_groups": good["param_groups"]},
    }
    for message, state_dict in bad.items():
        with pytest.raises(ValueError, match=message):
            fresh.load_state_dict(state_dict)
    assert fresh.state == {} and fresh.param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize("make, error, message", [
    (lambda p: mg.optim.SGD(p, lr=-0.1), ValueError, "lr must be >= 0"),
    (lambda p: mg.optim.SGD(p, lr=float("nan")), ValueError, "lr must be >= 0"),
    (lambda p: mg.optim.SGD(p, lr=0.1, momentum=-1), ValueError, "momentum"),
    (lambda p: mg.optim.SGD(p, lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda p: mg.optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda p: mg.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError, "nesterov"),
    (lambda p: mg.optim.Adam(p, lr=-1), ValueError, "lr"),
    (lambda p: mg.optim.Adam(p, betas=(1.0, 0.999)), ValueError, "beta1"),
    (lambda p: mg.optim.Adam(p, betas=(0.9, -0.1)), ValueError, "beta2"),
    (lambda p: mg.optim.AdamW(p, eps=-1e-8), ValueError, "eps"),
    (lambda p: mg.optim.AdamW(p, weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda p: mg.optim.Adam([{"params": p, "lr": -1}]), ValueError, "lr"),
    (lambda p: mg.optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda p: mg.optim.SGD(p[0], lr=0.1), TypeError, "single Tensor"),
    (lambda p: mg.optim.SGD({"params": p}, lr=0.1), TypeError, "single dict"),
    (lambda p: mg.optim.SGD(p + [p[0]], lr=0.1), ValueError, "given twice"),
    (lambda p: mg.optim.SGD([np.zeros(3)], lr=0.1), TypeError, "must be Tensors"),
    (lambda p: mg.optim.SGD([mg.tensor([1, 2])], lr=0.1), TypeError, "floating-point"),
    (lambda p: mg.optim.SGD([p[0] * 2], lr=0.1), ValueError, "non-leaf"),
    (lambda p: mg.optim.SGD([p[0], {"params": p[1:]}], lr=0.1), TypeError, "must be Tensors"),
    (lambda p: mg.optim.SGD(p, lr="abc"), TypeError, r"SGD: lr must be a real number, got str \('abc'\)"),
    (lambda p: mg.optim.SGD(p, lr=None), TypeError, "SGD: lr must be a real number, got NoneType"),
    (lambda p: mg.optim.SGD(p, lr=True), TypeError, "SGD: lr must be a real number, got bool"),
    (lambda p: mg.optim.SGD(p, lr=0.1, momentum="0.9"), TypeError, "SGD: momentum must be a real number"),
    (lambda p: mg.optim.SGD(p, lr=0.1, weight_decay=[0]), TypeError, "SGD: weight_decay must be a real number"),
    (lambda p: mg.optim.SGD(p, lr=0.1, dampening="x"), TypeError, "SGD: dampening must be a real number"),
    (lambda p: mg.optim.SGD(p, lr=0.1, nesterov="no"), TypeError, "SGD: nesterov must be True or False"),
    (lambda p: mg.optim.Adam(p, lr="1e-3"), TypeError, "Adam: lr must be a real number, got str"),
    (lambda p: mg.optim.Adam(p, eps=None), TypeError, "Adam: eps must be a real number"),
    (lambda p: mg.optim.AdamW(p, weight_decay="0.1"), TypeError, "AdamW: weight_decay must be a real number"),
    (lambda p: mg.optim.Adam(p, betas=0.9), TypeError, r"Adam: betas must be a pair of real numbers .* got 0\.9"),
    (lambda p: mg.optim.AdamW(p, betas=("0.9", 0.999)), TypeError, "AdamW: betas must be a pair of real numbers"),
    (lambda p: mg.optim.Adam(p, betas=(0.9,)), ValueError, "Adam: betas must be a pair"),
    (lambda p: mg.optim.Adam([{"params": p, "lr": "abc"}]), TypeError, "Adam: lr must be a real number"),
    (lambda p: mg.optim.SGD(5, lr=0.1), TypeError, "SGD: params must be an iterable .* got int"),
    (lambda p: mg.optim.SGD(iter([]), lr=0.1), ValueError, "SGD: optimizer got an empty parameter list"),
])
def test_validation(make, error, message):
    params = [mg.tensor(a, requires_grad=True) for a in INITIAL]
    with pytest.raises(error, match=message):
        make(params)


def test_numpy_numbers_are_hyperparameters_too():
    params = [mg.tensor(a, requires_grad=True) for a in INITIAL]
    optimizer = mg.optim.Adam(params, lr=np.float32(0.01), betas=[np.float64(0.9), 0.999], eps=np.float64(1e-8))
    assert optimizer.param_groups[0]["lr"] == np.float32(0.01)
    mg.optim.SGD(params, lr=1, momentum=np.int64(0), nesterov=np.bool_(False))


def test_a_module_instead_of_its_parameters_says_so():
    model = mg.nn.Sequential(mg.nn.Linear(2, 3), mg.nn.ReLU())
    for name in ["SGD", "Adam", "AdamW"]:
        with pytest.raises(TypeError, match=rf"{name}: params is a module \(Sequential\), not its parameters; "
                                            r"pass model\.parameters\(\)"):
            getattr(mg.optim, name)(model, lr=0.1)
    with pytest.raises(TypeError, match="got the module Linear; pass model.parameters()"):
        mg.optim.SGD([model[0]], lr=0.1)
    with pytest.raises(TypeError, match="params is a module"):
        mg.optim.SGD([{"params": model}], lr=0.1)
    parameters = model.parameters()
    mg.optim.SGD(parameters, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list .* call it again"):  # the generator is spent
        mg.optim.SGD(parameters, lr=0.1)


def test_a_bad_hyperparameter_in_a_loaded_state_dict_changes_nothing():
    params, sgd = train_minigrad("SGD", dict(lr=0.1, momentum=0.9), steps=1)
    state = sgd.state_dict()
    state["param_groups"][0]["lr"] = "0.1"
    with pytest.raises(TypeError, match="SGD: lr must be a real number"):
        sgd.load_state_dict(state)
    assert sgd.param_groups[0]["lr"] == 0.1


def test_zero_grad_and_step_skips_parameters_without_gradient():
    params, optimizer = train_minigrad("Adam", dict(lr=0.01), steps=1)
    assert all(p.grad is not None for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)
    before = [p.numpy().copy() for p in params]
    params[0].grad = mg.ones(*params[0].shape, dtype=mg.float64)
    optimizer.step()
    assert not np.array_equal(params[0].numpy(), before[0])
    for p, old in zip(params[1:], before[1:]):
        np.testing.assert_array_equal(p.numpy(), old)
    optimizer.zero_grad(set_to_none=False)
    assert params[0].grad.numpy().sum() == 0 and params[1].grad is None


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_step_never_writes_into_the_gradient(name, options):
    params, optimizer = train_minigrad(name, options, steps=1)
    grads = [p.grad.numpy().copy() for p in params]
    optimizer.step()
    optimizer.step()
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)


@pytest.mark.parametrize("name, options", [CASES[3], CASES[7], CASES[9]], ids=[CASE_IDS[3], CASE_IDS[7], CASE_IDS[9]])
def test_float32_parameters_and_state_stay_float32(name, options):
    params, optimizer = train_minigrad(name, dict(options, lr=np.float64(options["lr"])), steps=2,
                                       dtype=np.float32)
    assert all(p.dtype == np.float32 for p in params)
    for state in optimizer.state.values():
        assert all(value.dtype == np.float32 for value in state.values() if hasattr(value, "dtype"))


def cuda_available():
    try:
        mg.backend.array_module("cuda")
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a GPU")
@pytest.mark.parametrize("name, options", [CASES[3], CASES[7], CASES[9]], ids=[CASE_IDS[3], CASE_IDS[7], CASE_IDS[9]])
def test_cuda_matches_cpu_and_state_moves_between_devices(name, options):
    on_cpu, cpu_optimizer = train_minigrad(name, options, steps=3)
    on_gpu, gpu_optimizer = train_minigrad(name, options, steps=3, device="cuda")
    assert_weights_equal(on_gpu, [p.numpy() for p in on_cpu], rtol=1e-12, atol=1e-14)
    params = [mg.tensor(p.numpy(), requires_grad=True) for p in on_gpu]
    resumed = getattr(mg.optim, name)(params, **options)
    resumed.load_state_dict(gpu_optimizer.state_dict())
    for state in resumed.state.values():
        assert all(mg.backend.device_of(v) == "cpu" for v in state.values() if hasattr(v, "shape"))


def test_step_with_closure_returns_the_loss():
    params = [mg.tensor(a, requires_grad=True) for a in INITIAL]
    optimizer = mg.optim.SGD(params, lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = loss_of(params, mg.tensor(X), mg.tensor(Y))
        loss.backward()
        return loss
    first = optimizer.step(closure).item()
    assert optimizer.step(closure).item() < first
