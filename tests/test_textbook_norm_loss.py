"""The textbook backward rules of BatchNorm, SyncBatchNorm, the losses and Dropout (issue 20).

Each rule is checked three ways: (1) its first-order gradients equal those
of the fast array rule, and pass ``gradcheck`` with the textbook rules on;
(2) the second derivatives (gradient of sum(u * g), g the first gradient
taken with ``create_graph=True``) equal PyTorch's, and for a few cases the
third as well; (3) ``gradgradcheck`` against finite differences. Then a
Hessian-vector product of a small BatchNorm MLP against PyTorch, SyncBatchNorm
in a group of one and on two ranks, and the GPU path.
"""
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn.functional as F
from minigrad.nn.sync_batchnorm import SyncBatchNormFunction
from minigrad.ops.dropout import Dropout
from minigrad.ops.loss import CrossEntropy, LogSoftmax, MSELoss, Softmax
from minigrad.utils.gradcheck import GradcheckError
from oracle import randn, requires_torch, torch

EPS = 1e-3  # a batch-norm eps large enough to matter in every derivative


def probabilities(n, classes, seed):
    scores = np.exp(randn(n, classes, seed=seed))
    return scores / scores.sum(axis=1, keepdims=True)


def dropout_mask(shape, p, seed):
    """The mask minigrad's Dropout draws for ``shape`` after ``manual_seed(seed)``: 0 or 1 / (1 - p)."""
    mg.manual_seed(seed)
    return Dropout.apply(mg.tensor(np.ones(shape)), p=p).numpy()


def batch_norm_case(shape, training, affine):
    """(minigrad fn, torch fn, arrays): batch_norm with fresh running buffers (mean 0.3, var 2) per call."""
    channels = shape[1]

    def mine(x, *params):
        running = (mg.tensor(np.full(channels, 0.3)), mg.tensor(np.full(channels, 2.0)))
        return F.batch_norm(x, *running, *params, training=training, eps=EPS)

    def theirs(x, *params):
        running = (torch.full((channels,), 0.3, dtype=torch.float64), torch.full((channels,), 2.0, dtype=torch.float64))
        return torch.nn.functional.batch_norm(x, *running, *params, training=training, eps=EPS)

    arrays = [randn(*shape, seed=1) * 2 + 0.5] + [randn(channels, seed=2) + 1, randn(channels, seed=3)][:2 * affine]
    return mine, theirs, arrays, ()


def softmax_case(node, torch_name, shape, axis):
    return (lambda x: node.apply(x, axis=axis),
            lambda x: getattr(torch.nn.functional, torch_name)(x, dim=axis),
            [2 * randn(*shape, seed=1)], ())


def index_cross_entropy_case(reduction, weighted, ignore_index, label_smoothing):
    labels = np.array([0, 3, 2, -1, 1]) if ignore_index == -1 else np.array([0, 3, 2, 2, 1])
    options = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing)
    arrays = [2 * randn(5, 4, seed=1), labels] + [np.abs(randn(4, seed=2)) + 0.2] * weighted
    return (lambda logits, target, *weight: CrossEntropy.apply(logits, target, *weight, **options),
            lambda logits, target, *weight: torch.nn.functional.cross_entropy(
                logits, target, *weight, **options),
            arrays, (2,))  # the class weights of index targets have no gradient (nor in PyTorch)


def probability_cross_entropy_case(reduction, weighted, label_smoothing):
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    arrays = [2 * randn(5, 4, seed=1), probabilities(5, 4, seed=3)] + [np.abs(randn(4, seed=2)) + 0.2] * weighted
    return (lambda logits, target, *weight: CrossEntropy.apply(logits, target, *weight, **options),
            lambda logits, target, *weight: torch.nn.functional.cross_entropy(
                logits, target, *weight, **options),
            arrays, ())


def mse_case(reduction):
    return (lambda a, b: MSELoss.apply(a, b, reduction=reduction),
            lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction),
            [randn(3, 4, seed=1), randn(3, 4, seed=2)], ())


def dropout_case(p):
    """dropout(x)^3, so that the second derivative is not 0: 3 (m x)^2 m, then 6 (m x) m^2."""
    shape = (4, 5)
    mask = dropout_mask(shape, p, seed=7)

    def mine(x):
        mg.manual_seed(7)  # the same mask at every call (gradgradcheck calls fn many times)
        return Dropout.apply(x, p=p) ** 3

    return mine, lambda x: (x * torch.tensor(mask)) ** 3, [randn(*shape, seed=1)], ()


CASES = {
    "softmax-last": softmax_case(Softmax, "softmax", (3, 4), -1),
    "softmax-axis0": softmax_case(Softmax, "softmax", (3, 4), 0),
    "softmax-3d": softmax_case(Softmax, "softmax", (2, 3, 4), 1),
    "log_softmax-last": softmax_case(LogSoftmax, "log_softmax", (3, 4), -1),
    "log_softmax-3d": softmax_case(LogSoftmax, "log_softmax", (2, 3, 4), 1),
    **{f"mse-{r}": mse_case(r) for r in ("mean", "sum", "none")},
    **{f"ce-index-{r}-w{w}-ignore{i}-smooth{s}": index_cross_entropy_case(r, w, i, s)
       for r in ("mean", "sum", "none") for w in (False, True) for i, s in ((-100, 0.0), (-1, 0.0), (-1, 0.2))},
    **{f"ce-prob-{r}-w{w}-smooth{s}": probability_cross_entropy_case(r, w, s)
       for r in ("mean", "sum", "none") for w in (False, True) for s in (0.0, 0.3)},
    **{f"bn-{len(shape)}d-{'train' if t else 'eval'}-{'affine' if a else 'plain'}": batch_norm_case(shape, t, a)
       for shape in ((6, 3), (3, 2, 3, 2)) for t in (True, False) for a in (True, False)},
    "dropout-0.3": dropout_case(0.3),
    "dropout-0.6": dropout_case(0.6),
}


def wants_grad(arrays, frozen):
    return [np.issubdtype(np.asarray(a).dtype, np.floating) and i not in frozen for i, a in enumerate(arrays)]


def mg_inputs(arrays, frozen, device=None):
    return [mg.tensor(a, device=device, requires_grad=w) for a, w in zip(arrays, wants_grad(arrays, frozen))]


def assert_close(actual, expected, rtol, what):
    """Equal within rtol, relative to each array's largest element (BatchNorm's gradients cancel to ~0)."""
    expected = np.asarray(expected)
    scale = np.abs(expected).max() if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def weights_for(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


# ----- (1) first order: the textbook rule equals the fast rule, and checks ------------------------
def first_order(fn, arrays, frozen):
    inputs = mg_inputs(arrays, frozen)
    out = fn(*inputs)
    out.backward(mg.tensor(weights_for(out.shape, seed=11)))
    return [None if t.grad is None else t.grad.numpy() for t in inputs]


@pytest.mark.parametrize("name", list(CASES))
def test_the_textbook_rule_equals_the_fast_rule(name):
    fn, _, arrays, frozen = CASES[name]
    fast = first_order(fn, arrays, frozen)
    with mg.config.textbook():
        textbook = first_order(fn, arrays, frozen)
    for number, (a, b) in enumerate(zip(textbook, fast)):
        assert (a is None) == (b is None)
        if a is not None:
            # BatchNorm's textbook rule sums with Tensor ops where the fast one uses einsum: rounding only
            assert_close(a, b, 1e-12, f"{name}: input {number}")


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_passes_with_the_textbook_rules(name):
    fn, _, arrays, frozen = CASES[name]
    with mg.config.textbook():
        assert mg.utils.gradcheck(fn, *mg_inputs(arrays, frozen))


@pytest.mark.usefixtures("fast_on")
def test_the_textbook_rule_runs_and_a_wrong_one_fails(monkeypatch):
    """The tests above do run the textbook rule: a wrong one (doubled) makes them fail."""
    fn, _, arrays, frozen = CASES["softmax-last"]
    right = Softmax.backward
    monkeypatch.setattr(Softmax, "backward", lambda self, grad: right(self, grad) * 2)
    fast = first_order(fn, arrays, frozen)
    with mg.config.textbook():
        textbook = first_order(fn, arrays, frozen)
        with pytest.raises(GradcheckError, match="gradcheck: input 0"):
            mg.utils.gradcheck(fn, *mg_inputs(arrays, frozen))
    np.testing.assert_allclose(textbook[0], 2 * fast[0])


# ----- (2) second and third derivatives against PyTorch -------------------------------------------
def derivatives_mine(fn, arrays, frozen, order, device=None):
    """[first, second, (third)] gradients of every input that wants one, as NumPy arrays.

    first = d sum(v f)/dx; second = d sum(u first)/dx; third = d sum(w second)/dx,
    u and w summed over every input. A derivative that does not depend on the
    inputs any more is 0.
    """
    inputs = mg_inputs(arrays, frozen, device)
    wanted = [t for t in inputs if t.requires_grad]
    out = fn(*inputs)
    scalar = (out * mg.tensor(weights_for(out.shape, 1), device=device)).sum()
    found = []
    for level in range(order):
        if not scalar.requires_grad:
            found.append([np.zeros(t.shape) for t in wanted])
            continue
        grads = mg.autograd.grad(scalar, wanted, create_graph=level + 1 < order, allow_unused=True)
        grads = [mg.zeros(*t.shape, dtype=t.dtype, device=device) if g is None else g for g, t in zip(grads, wanted)]
        found.append([g.numpy() for g in grads])
        terms = [(g * mg.tensor(weights_for(g.shape, 10 * level + i + 2), device=device)).sum()
                 for i, g in enumerate(grads)]
        scalar = terms[0]
        for term in terms[1:]:
            scalar = scalar + term
    return found


def derivatives_torch(fn, arrays, frozen, order):
    inputs = [torch.tensor(np.asarray(a), requires_grad=bool(w)) for a, w in zip(arrays, wants_grad(arrays, frozen))]
    wanted = [t for t in inputs if t.requires_grad]
    out = fn(*inputs)
    scalar = (out * torch.tensor(weights_for(tuple(out.shape), 1))).sum()
    found = []
    for level in range(order):
        if not scalar.requires_grad:
            found.append([np.zeros(tuple(t.shape)) for t in wanted])
            continue
        grads = torch.autograd.grad(scalar, wanted, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wanted)]
        found.append([g.detach().numpy() for g in grads])
        terms = [(g * torch.tensor(weights_for(tuple(g.shape), 10 * level + i + 2))).sum()
                 for i, g in enumerate(grads)]
        scalar = sum(terms[1:], terms[0])
    return found


@requires_torch
@pytest.mark.parametrize("name", list(CASES))
def test_second_derivatives_match_torch(name):
    fn, torch_fn, arrays, frozen = CASES[name]
    mine, theirs = derivatives_mine(fn, arrays, frozen, 2), derivatives_torch(torch_fn, arrays, frozen, 2)
    for level, (a_level, b_level) in enumerate(zip(mine, theirs)):
        for number, (a, b) in enumerate(zip(a_level, b_level)):
            assert_close(a, b, 1e-10, f"{name}: derivative {level + 1} of checked input {number}")


def torch_batch_norm_from_primitives(x, weight=None, bias=None):
    """Training-mode batch norm written with PyTorch's elementary ops.

    PyTorch's fused ``batch_norm`` gets derivatives from the third order on
    wrong in training mode (pytorch/pytorch#186256: its double backward treats
    the saved statistics as constants), so the third derivatives are compared with this.
    """
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    per_channel = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    centered = x - x.mean(dim=axes, keepdim=True)
    out = centered / torch.sqrt((centered * centered).mean(dim=axes, keepdim=True) + EPS)
    if weight is not None:
        out = out * weight.reshape(per_channel) + bias.reshape(per_channel)
    return out


THIRD_ORDER = {"softmax-last": None, "log_softmax-3d": None, "ce-index-mean-wTrue-ignore-1-smooth0.2": None,
               "ce-prob-none-wTrue-smooth0.3": None, "mse-mean": None, "dropout-0.3": None,
               "bn-2d-eval-affine": None, "bn-2d-train-affine": torch_batch_norm_from_primitives,
               "bn-4d-train-plain": torch_batch_norm_from_primitives}


@requires_torch
@pytest.mark.parametrize("name", list(THIRD_ORDER))
def test_third_derivatives_match_torch(name):
    fn, torch_fn, arrays, frozen = CASES[name]
    mine = derivatives_mine(fn, arrays, frozen, 3)
    theirs = derivatives_torch(THIRD_ORDER[name] or torch_fn, arrays, frozen, 3)
    for level, (a_level, b_level) in enumerate(zip(mine, theirs)):
        for number, (a, b) in enumerate(zip(a_level, b_level)):
            assert_close(a, b, 1e-10, f"{name}: derivative {level + 1} of checked input {number}")


@requires_torch
def test_torchs_fused_batch_norm_is_wrong_at_the_third_order_so_it_is_not_the_reference():
    """If PyTorch fixes #186256 (or makes it an error), the reference above can become its batch_norm again."""
    fn, torch_fn, arrays, frozen = CASES["bn-2d-train-affine"]
    composite = derivatives_torch(torch_batch_norm_from_primitives, arrays, frozen, 3)
    try:
        fused = derivatives_torch(torch_fn, arrays, frozen, 3)
    except RuntimeError:
        return  # a PyTorch that refuses the third order
    for level in range(2):
        assert_close(fused[level][0], composite[level][0], 1e-10, f"derivative {level + 1}")
    assert np.abs(fused[2][0] - composite[2][0]).max() > 1e-3


def test_the_third_derivative_cases_exist():
    assert set(THIRD_ORDER) <= set(CASES)


# ----- (3) gradgradcheck against finite differences ------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_gradgradcheck(name):
    fn, _, arrays, frozen = CASES[name]
    assert mg.utils.gradgradcheck(fn, *mg_inputs(arrays, frozen))


# ----- a Hessian-vector product of a BatchNorm MLP, against PyTorch -------------------------------
def mlp_parameters():
    return [randn(6, 4, seed=1) * 0.6, randn(6, seed=2) * 0.1, randn(6, seed=3) * 0.2 + 1, randn(6, seed=4) * 0.1,
            randn(3, 6, seed=5) * 0.5, randn(3, seed=6) * 0.1]


def mlp_hessian_vector_product(functional, framework, x, labels, parameters, vectors):
    """(gradient, H v) of cross_entropy(Linear -> BatchNorm1d -> ReLU -> Linear) in the parameters."""
    w1, b1, gamma, beta, w2, b2 = parameters
    hidden = functional.linear(x, w1, b1)
    if framework is torch:
        running = (torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    else:
        running = (mg.zeros(6, dtype=mg.float64), mg.ones(6, dtype=mg.float64))
    hidden = functional.batch_norm(hidden, *running, gamma, beta, training=True, eps=EPS)
    loss = functional.cross_entropy(functional.linear(functional.relu(hidden), w2, b2), labels)
    grad = framework.autograd.grad(loss, parameters, create_graph=True)
    product = sum(((g * v).sum() for g, v in zip(grad[1:], vectors[1:])), (grad[0] * vectors[0]).sum())
    return grad, framework.autograd.grad(product, parameters)


@requires_torch
def test_a_batchnorm_mlp_hessian_vector_product_matches_torch():
    x, labels = randn(8, 4, seed=10), np.array([0, 2, 1, 1, 0, 2, 2, 1])
    vectors = [randn(*p.shape, seed=20 + i) for i, p in enumerate(mlp_parameters())]
    mine = mlp_hessian_vector_product(
        F, mg, mg.tensor(x), mg.tensor(labels), [mg.tensor(p, requires_grad=True) for p in mlp_parameters()],
        [mg.tensor(v) for v in vectors])
    theirs = mlp_hessian_vector_product(
        torch.nn.functional, torch, torch.tensor(x), torch.tensor(labels),
        [torch.tensor(p, requires_grad=True) for p in mlp_parameters()], [torch.tensor(v) for v in vectors])
    for what, a_all, b_all in zip(("gradient", "H v"), mine, theirs):
        for number, (a, b) in enumerate(zip(a_all, b_all)):
            # the first bias's entries are 0 up to rounding (BatchNorm removes any shift): compared at the scale of H v
            scale = max(np.abs(b.detach().numpy()).max(), 1e-3)
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-10 * scale,
                                       err_msg=f"{what} of parameter {number}")
    assert np.abs(theirs[1][0].numpy()).max() > 1e-3, "the product must not be trivially zero"


# ----- SyncBatchNorm: in a group of one it is BatchNorm ---------------------------------------------
@pytest.fixture
def group_of_one():
    dist.init_process_group()
    yield
    dist.destroy_process_group()


def sync_batch_norm(x, weight, bias):
    return SyncBatchNormFunction.apply(x, weight, bias, eps=EPS)


def plain_batch_norm(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True, eps=EPS)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 2, 2)])
def test_sync_batchnorm_textbook_rule_in_a_group_of_one_is_batchnorms(group_of_one, shape):
    arrays = [randn(*shape, seed=1) * 3 + 2, randn(3, seed=2), randn(3, seed=3)]
    for fn in (sync_batch_norm, plain_batch_norm):
        with mg.config.textbook():
            textbook = first_order(fn, arrays, ())
        for a, b in zip(textbook, first_order(fn, arrays, ())):
            assert_close(a, b, 1e-12, f"{fn.__name__}: textbook against fast")
    synced, plain = (derivatives_mine(fn, arrays, (), order=3) for fn in (sync_batch_norm, plain_batch_norm))
    for level, (a_level, b_level) in enumerate(zip(synced, plain)):
        for number, (a, b) in enumerate(zip(a_level, b_level)):
            assert_close(a, b, 1e-11, f"derivative {level + 1} of input {number}")
    assert mg.utils.gradgradcheck(sync_batch_norm, *mg_inputs(arrays, ()))


MPIEXEC = shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(not (importlib.util.find_spec("mpi4py") and MPIEXEC),
                               reason="two ranks need mpi4py and mpiexec")

TWO_RANK_WORKER = """
import sys
import numpy as np
import minigrad as mg
import minigrad.distributed as dist
from minigrad.nn.sync_batchnorm import SyncBatchNormFunction

dist.init_process_group()
rank, size = dist.get_rank(), dist.get_world_size()
arrays = {name: np.load(sys.argv[1])[name] for name in ("x", "weight", "bias", "v", "u_x", "u_weight", "u_bias")}
rows = slice(rank * len(arrays["x"]) // size, (rank + 1) * len(arrays["x"]) // size)
x = mg.tensor(arrays["x"][rows], requires_grad=True)
weight, bias = (mg.tensor(arrays[name], requires_grad=True) for name in ("weight", "bias"))
inputs = [x, weight, bias]
out = SyncBatchNormFunction.apply(x, weight, bias, eps=float(sys.argv[3]))
first = mg.autograd.grad((out * mg.tensor(arrays["v"][rows])).sum(), inputs, create_graph=True)
us = [arrays["u_x"][rows], arrays["u_weight"], arrays["u_bias"]]
product = sum(((g * mg.tensor(u)).sum() for g, u in zip(first[1:], us[1:])), (first[0] * mg.tensor(us[0])).sum())
found = [g.numpy() for g in first]
for textbook in (False, True):  # H v by the fast rules, then by the textbook rules (AllReduceSum's too)
    if textbook:
        mg.config.fast = False
    second = mg.autograd.grad(product, inputs, retain_graph=True, allow_unused=True)  # beta's is None
    found += [np.zeros(t.shape) if g is None else g.numpy() for g, t in zip(second, inputs)]
np.savez(sys.argv[2] + f".{rank}.npz", *found)
dist.destroy_process_group()
"""


def mpiexec_command(ranks):
    command = [MPIEXEC, "-n", str(ranks)]
    if "Open MPI" in subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout:
        command.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-run-as-root")
    return command


@needs_mpi
def test_sync_batchnorm_second_derivatives_on_two_ranks_are_the_whole_batchs(tmp_path):
    """Two ranks, each half of a batch: the gradient and the Hessian-vector product are the whole batch's."""
    shape = (6, 3, 2, 2)
    arrays = dict(x=randn(*shape, seed=1) * 2 + 1, weight=randn(3, seed=2), bias=randn(3, seed=3),
                  v=randn(*shape, seed=4), u_x=randn(*shape, seed=5),
                  u_weight=randn(3, seed=6), u_bias=randn(3, seed=7))
    np.savez(tmp_path / "arrays.npz", **arrays)
    (tmp_path / "worker.py").write_text(TWO_RANK_WORKER)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MINIGRAD_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env = {k: v for k, v in env.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_", "PRTE_"))}
    command = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "arrays.npz"), str(tmp_path / "out")]
    done = subprocess.run(mpiexec_command(2) + command + [str(EPS)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [np.load(tmp_path / f"out.{rank}.npz") for rank in range(2)]
    ranks = [[found[f"arr_{i}"] for i in range(9)] for found in ranks]
    # the whole batch in one process, through plain BatchNorm
    inputs = [mg.tensor(arrays[name], requires_grad=True) for name in ("x", "weight", "bias")]
    first = mg.autograd.grad((plain_batch_norm(*inputs) * mg.tensor(arrays["v"])).sum(), inputs, create_graph=True)
    product = sum(((g * mg.tensor(arrays[name])).sum() for g, name in zip(first[1:], ("u_weight", "u_bias"))),
                  (first[0] * mg.tensor(arrays["u_x"])).sum())
    second = mg.autograd.grad(product, inputs, allow_unused=True)
    second = [mg.zeros(*t.shape, dtype=t.dtype) if g is None else g for g, t in zip(second, inputs)]
    for level, expected in ((0, first), (3, second), (6, second)):
        # x's rows are split between the ranks; gamma's and beta's gradients are the ranks' parts, summed (as DDP does)
        assert_close(np.concatenate([found[level] for found in ranks]), expected[0].numpy(), 1e-10, f"x, level {level}")
        for number in (1, 2):
            assert_close(sum(found[level + number] for found in ranks), expected[number].numpy(), 1e-10,
                         f"parameter {number}, level {level}")


# ----- the GPU path -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bn-4d-train-affine", "bn-2d-eval-affine", "ce-index-mean-wTrue-ignore-1-smooth0.2",
                                  "ce-prob-mean-wTrue-smooth0.3", "softmax-3d", "mse-none", "dropout-0.3"])
def test_second_derivatives_on_the_gpu_equal_the_cpus(cupy, name):
    fn, _, arrays, frozen = CASES[name]
    if name.startswith("bn"):  # the running buffers must be on the input's device
        training = "train" in name
        channels = arrays[0].shape[1]

        def fn(x, *params):
            running = [mg.tensor(np.full(channels, value), device=x.device) for value in (0.3, 2.0)]
            return F.batch_norm(x, *running, *params, training=training, eps=EPS)
    if name.startswith("dropout"):  # the GPU draws its own mask: compare with the CPU on that mask
        mg.manual_seed(7)
        mask = Dropout.apply(mg.ones(*arrays[0].shape, dtype=mg.float64, device="cuda"), p=0.3).numpy()
        gpu = derivatives_mine(CASES[name][0], arrays, frozen, order=2, device="cuda")
        cpu = derivatives_mine(lambda x: (x * mg.tensor(mask)) ** 3, arrays, frozen, order=2)
    else:
        gpu = derivatives_mine(fn, arrays, frozen, order=2, device="cuda")
        cpu = derivatives_mine(fn, arrays, frozen, order=2)
    for level, (a_level, b_level) in enumerate(zip(gpu, cpu)):
        for number, (a, b) in enumerate(zip(a_level, b_level)):
            assert_close(a, b, 1e-10, f"{name}: derivative {level + 1} of checked input {number}")


# ----- an input the textbook rule reads, changed in place, makes backward raise --------------------------------
IN_PLACE_CASES = {  # name: (fn of (changed input, other input that requires grad), shapes)
    "BatchNorm": (lambda x, w: F.batch_norm(x, None, None, w, None, training=True), [(4, 3), (3,)]),
    "BatchNorm-eval": (lambda x, w: F.batch_norm(x, mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64), w,
                                                 None, training=False), [(4, 3), (3,)]),
    "CrossEntropy": (lambda target, logits: F.cross_entropy(logits, target, label_smoothing=0.1), [(4, 3), (4, 3)]),
    "MSELoss": (lambda target, x: F.mse_loss(x, target), [(4, 3), (4, 3)]),
}


@pytest.mark.parametrize("textbook", [False, True])
@pytest.mark.parametrize("name", list(IN_PLACE_CASES))
def test_an_input_changed_in_place_after_forward_makes_backward_raise(name, textbook):
    fn, shapes = IN_PLACE_CASES[name]
    changed = mg.tensor(np.abs(randn(*shapes[0], seed=1)))
    other = mg.tensor(randn(*shapes[1], seed=2), requires_grad=True)
    out = fn(changed, other)
    changed += 1  # allowed: it needs no gradient; but the node's rule reads it
    node = name.split("-")[0]
    with mg.config.textbook() if textbook else contextlib.nullcontext():
        with pytest.raises(RuntimeError, match=f"needed for the gradient of {node} was modified in place"):
            out.sum().backward()
