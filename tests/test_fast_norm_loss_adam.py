"""The fast drop-ins of BatchNorm, SyncBatchNorm, the losses, Dropout and Adam's step equal their textbook rules.

Every case runs twice: with the fast paths on (the drop-in) and under
``mg.config.textbook()`` (no drop-ins at all), and compares the outputs, the
first-order gradients of every input and BatchNorm's running buffers. The
node's class is checked as well, so that a test cannot pass by running one
path twice.

Tolerances, float64. The losses and Dropout keep their textbook forward, so
their outputs are the same bits; Dropout's gradient is g * mask either way,
the same bits too. BatchNorm's drop-in sums by ``einsum`` where the textbook
rule takes NumPy's (pairwise) mean and sum, and the losses' textbook rules
compute softmax again from the logits, so those agree to rounding: within
1e-12 of each array's largest element (BatchNorm's input gradient cancels to
almost 0 elementwise, so the bound is relative to the array's scale, as in
test_textbook_norm_loss.py). float32: within 2e-6 of the scale, about 16
of float32's rounding steps (1.2e-7) for the same reordering of sums.
Adam's step does the same operations in the same order: the same bits.
"""
import contextlib

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn.functional as F
from minigrad import backend
from minigrad.fast import adam as fast_adam, dropout as fast_dropout, loss as fast_loss, norm as fast_norm
from minigrad.nn.sync_batchnorm import SyncBatchNormFunction
from minigrad.ops import dropout, loss, norm
from minigrad.optim import adam
from oracle import randn, requires_torch, torch

COVERS = {norm.BatchNorm, SyncBatchNormFunction, loss.Softmax, loss.LogSoftmax, loss.CrossEntropy, loss.MSELoss,
          dropout.Dropout, adam.adam_step}

pytestmark = pytest.mark.usefixtures("fast_on")

RTOL = {np.float64: 1e-12, np.float32: 2e-6}
EPS = 1e-3  # a batch-norm eps large enough to matter


def assert_close(actual, expected, rtol, what):
    """Equal within rtol of the expected array's largest element (NaN where the other is NaN)."""
    expected = np.asarray(expected)
    finite = expected[np.isfinite(expected)]
    scale = np.abs(finite).max() if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def run(make, arrays, textbook, device=None, frozen=()):
    """Output, input gradients, the output's node class and the buffers, fast on or under ``textbook()``.

    ``make()`` returns the function of the inputs and the buffers (raw arrays)
    it updates. Float arrays want a gradient unless their index is in ``frozen``.
    """
    with mg.config.textbook() if textbook else contextlib.nullcontext():
        fn, buffers = make()
        inputs = [None if a is None else
                  mg.tensor(a, device=device, requires_grad=np.issubdtype(a.dtype, np.floating) and i not in frozen)
                  for i, a in enumerate(arrays)]
        out = fn(*inputs)
        upstream = np.random.default_rng(11).standard_normal(out.shape).astype(out.dtype)
        out.backward(mg.tensor(upstream, device=device))
    grads = [None if t is None or t.grad is None else t.grad.numpy() for t in inputs]
    return out.numpy(), grads, type(out.grad_fn), [backend.as_numpy(b) for b in buffers]


def assert_fast_equals_textbook(make, arrays, rule, device=None, frozen=(), rtol=None, exact_output=False):
    """The drop-in of ``rule`` (fast on) against ``rule`` itself (textbook): classes, outputs, gradients, buffers."""
    dtype = next(a.dtype.type for a in arrays if a is not None and np.issubdtype(a.dtype, np.floating))
    rtol = RTOL[dtype] if rtol is None else rtol
    fast = run(make, arrays, False, device, frozen)
    textbook = run(make, arrays, True, device, frozen)
    assert fast[2] is mg.config.drop_ins[rule] and fast[2] is not rule, f"fast on ran {fast[2]}"
    assert textbook[2] is rule, f"the textbook run ran {textbook[2]}"
    if exact_output:
        np.testing.assert_array_equal(fast[0], textbook[0])
    assert_close(fast[0], textbook[0], rtol, "output")
    for number, (a, b) in enumerate(zip(fast[1], textbook[1])):
        assert (a is None) == (b is None), f"input {number}: a gradient on one path only"
        if a is not None:
            assert a.dtype == b.dtype
            assert_close(a, b, rtol, f"gradient of input {number}")
    for number, (a, b) in enumerate(zip(fast[3], textbook[3])):
        assert_close(a, b, rtol, f"buffer {number}")
    return fast, textbook


# ----- BatchNorm -------------------------------------------------------------------------------------------
AFFINE = {"both": (True, True), "weight": (True, False), "bias": (False, True), "neither": (False, False)}


def batch_norm_arrays(shape, affine, dtype=np.float64, seed=1):
    with_weight, with_bias = AFFINE[affine]
    channels = shape[1]
    return [(3 + 2 * randn(*shape, seed=seed)).astype(dtype),
            (randn(channels, seed=seed + 1) + 1).astype(dtype) if with_weight else None,
            randn(channels, seed=seed + 2).astype(dtype) if with_bias else None]


def batch_norm_maker(channels, training, with_running, dtype=np.float64, device=None):
    def make():
        running = [None, None]
        if with_running:
            running = [mg.tensor(np.full(channels, value, dtype), device=device) for value in (0.3, 2.0)]

        def fn(x, weight, bias):
            return F.batch_norm(x, *running, weight, bias, training=training, momentum=0.1, eps=EPS)
        return fn, [r.data for r in running if r is not None]
    return make


BATCH_NORM_CASES = [pytest.param(shape, training, affine, with_running,
                                 id=f"{len(shape)}d-{'train' if training else 'eval'}-{affine}"
                                    f"{'-running' if with_running else ''}")
                    for shape in ((6, 3), (3, 4, 5, 2)) for training in (True, False) for affine in AFFINE
                    for with_running in (True, False) if with_running or training]


@pytest.mark.parametrize("shape, training, affine, with_running", BATCH_NORM_CASES)
def test_batch_norm_drop_in_equals_the_textbook_rule(shape, training, affine, with_running):
    assert_fast_equals_textbook(batch_norm_maker(shape[1], training, with_running),
                                batch_norm_arrays(shape, affine), norm.BatchNorm)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(64, 16), (8, 4, 9, 9)])
def test_batch_norm_drop_in_in_float32(shape, training):
    fast, _ = assert_fast_equals_textbook(batch_norm_maker(shape[1], training, True, np.float32),
                                          batch_norm_arrays(shape, "both", np.float32), norm.BatchNorm)
    assert fast[0].dtype == np.float32 and all(b.dtype == np.float32 for b in fast[3])


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_large_batch_norm_shared_among_threads_equals_the_textbook_rule(monkeypatch, training, threads):
    """Above fast.cpu.PARALLEL_SIZE values the channels are shared out among threads."""
    monkeypatch.setattr(mg.config, "threads", threads)
    shape = (8, 5, 64, 64)
    assert np.prod(shape) > fast_norm.PARALLEL_SIZE
    assert_fast_equals_textbook(batch_norm_maker(5, training, True), batch_norm_arrays(shape, "both"),
                                norm.BatchNorm)


@pytest.mark.parametrize("shape, training, affine, with_running",
                         [case for case in BATCH_NORM_CASES if case.values[2] in ("both", "neither")])
def test_batch_norm_drop_in_on_the_gpu_path(standin, shape, training, affine, with_running):
    """The stand-in's CuPy arrays: per-channel values broadcast as views, and one call for every channel."""
    assert_fast_equals_textbook(batch_norm_maker(shape[1], training, with_running, device="cuda"),
                                batch_norm_arrays(shape, affine), norm.BatchNorm, device="cuda")


def textbook_derivatives(make, arrays, made_fast):
    """First and second derivatives (by the textbook rules) of a graph made fast (the drop-in) or made textbook."""
    with mg.config.textbook() if not made_fast else contextlib.nullcontext():
        fn, _ = make()
        inputs = [None if a is None else mg.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*inputs)
    node = type(out.grad_fn)
    wanted = [t for t in inputs if t is not None]
    with mg.config.textbook():
        first = mg.autograd.grad((out * mg.tensor(randn(*out.shape, seed=4))).sum(), wanted, create_graph=True)
        product = sum(((g * mg.tensor(randn(*g.shape, seed=5 + i))).sum() for i, g in enumerate(first[1:])),
                      (first[0] * mg.tensor(randn(*first[0].shape, seed=5))).sum())
        second = mg.autograd.grad(product, wanted, allow_unused=True)
    return node, [g.numpy() for g in first] + [np.zeros(t.shape) if g is None else g.numpy()
                                                for g, t in zip(second, wanted)]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 2)])
def test_a_graph_made_by_the_batch_norm_drop_in_is_differentiated_again_by_the_textbook_rule(shape, training):
    """The drop-in's forward leaves what the textbook backward reads: fast off later, or create_graph."""
    make, arrays = batch_norm_maker(shape[1], training, True), batch_norm_arrays(shape, "both")
    fast_node, made_fast = textbook_derivatives(make, arrays, made_fast=True)
    textbook_node, made_textbook = textbook_derivatives(make, arrays, made_fast=False)
    assert fast_node is fast_norm.BatchNorm and textbook_node is norm.BatchNorm
    for number, (a, b) in enumerate(zip(made_fast, made_textbook)):
        assert_close(a, b, 1e-12, f"derivative {number // 3 + 1} of input {number % 3}")


# ----- SyncBatchNorm, in a group of one --------------------------------------------------------------------
@pytest.fixture
def group_of_one():
    dist.init_process_group()
    yield
    dist.destroy_process_group()


def sync_batch_norm_maker(channels, with_running, device=None):
    def make():
        running = [None, None]
        if with_running:  # raw arrays, on the input's device
            running = [mg.tensor(np.full(channels, value), device=device).data for value in (0.3, 2.0)]

        def fn(x, weight, bias):
            return SyncBatchNormFunction.apply(x, weight, bias, running_mean=running[0], running_var=running[1],
                                               momentum=0.1, eps=EPS)
        return fn, [r for r in running if r is not None]
    return make


@pytest.mark.parametrize("with_running", [True, False], ids=["running", "no-running"])
@pytest.mark.parametrize("affine", ["both", "neither", "weight"])
@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 2, 2)])
def test_sync_batch_norm_drop_in_equals_the_textbook_rule(group_of_one, shape, affine, with_running):
    assert_fast_equals_textbook(sync_batch_norm_maker(shape[1], with_running), batch_norm_arrays(shape, affine),
                                SyncBatchNormFunction)


def test_sync_batch_norm_drop_in_in_float32(group_of_one):
    arrays = batch_norm_arrays((8, 4, 5, 5), "both", np.float32)
    fast, _ = assert_fast_equals_textbook(sync_batch_norm_maker(4, False), arrays, SyncBatchNormFunction)
    assert fast[0].dtype == np.float32


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 2, 2)])
def test_sync_batch_norm_drop_in_on_the_gpu_path(standin, group_of_one, shape):
    assert_fast_equals_textbook(sync_batch_norm_maker(shape[1], True, device="cuda"),
                                batch_norm_arrays(shape, "both"), SyncBatchNormFunction, device="cuda")


def test_a_graph_made_by_the_sync_batch_norm_drop_in_is_differentiated_again_by_the_textbook_rule(group_of_one):
    make, arrays = sync_batch_norm_maker(3, True), batch_norm_arrays((3, 3, 2, 2), "both")
    fast_node, made_fast = textbook_derivatives(make, arrays, made_fast=True)
    textbook_node, made_textbook = textbook_derivatives(make, arrays, made_fast=False)
    assert fast_node is fast_norm.SyncBatchNormFunction and textbook_node is SyncBatchNormFunction
    for number, (a, b) in enumerate(zip(made_fast, made_textbook)):
        assert_close(a, b, 1e-12, f"derivative {number // 3 + 1} of input {number % 3}")


# ----- softmax, log-softmax and the losses -------------------------------------------------------------------
def plain(fn):
    """A maker for a function with no buffers."""
    return lambda: (fn, [])


def probabilities(n, classes, seed, dtype=np.float64):
    scores = np.exp(randn(n, classes, seed=seed))
    return (scores / scores.sum(axis=1, keepdims=True)).astype(dtype)


def class_weight(dtype=np.float64):
    return (np.abs(randn(4, seed=2)) + 0.2).astype(dtype)


def cross_entropy(**options):
    return plain(lambda logits, target, weight=None: F.cross_entropy(logits, target, weight, **options))


LABELS = {"plain": np.array([0, 3, 2, 2, 1]), "ignored": np.array([0, 3, -1, 2, -1]),
          "all-ignored": np.full(5, -1)}

LOSS_CASES = {
    **{f"softmax-{shape}-axis{axis}": (loss.Softmax, plain(lambda x, axis=axis: loss.Softmax.apply(x, axis=axis)),
                                      [2 * randn(*shape, seed=1)], ())
       for shape, axis in (((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1))},
    **{f"log_softmax-{shape}-axis{axis}": (loss.LogSoftmax,
                                          plain(lambda x, axis=axis: loss.LogSoftmax.apply(x, axis=axis)),
                                          [2 * randn(*shape, seed=1)], ())
       for shape, axis in (((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1))},
    **{f"ce-index-{reduction}-{labels}-w{weighted}-smooth{smoothing}": (
        loss.CrossEntropy,
        cross_entropy(reduction=reduction, ignore_index=-1, label_smoothing=smoothing),
        [2 * randn(5, 4, seed=1), LABELS[labels]] + [class_weight()] * weighted, (2,))
       for reduction in ("mean", "sum", "none") for labels in LABELS for weighted in (False, True)
       for smoothing in (0.0, 0.2)},
    **{f"ce-prob-{reduction}-w{weighted}-smooth{smoothing}": (
        loss.CrossEntropy, cross_entropy(reduction=reduction, label_smoothing=smoothing),
        [2 * randn(5, 4, seed=1), probabilities(5, 4, seed=3)] + [class_weight()] * weighted, ())
       for reduction in ("mean", "sum", "none") for weighted in (False, True) for smoothing in (0.0, 0.3)},
    "ce-prob-target-frozen": (loss.CrossEntropy, cross_entropy(label_smoothing=0.1),
                              [2 * randn(5, 4, seed=1), probabilities(5, 4, seed=3), class_weight()], (1,)),
    **{f"mse-{reduction}-{shape}": (loss.MSELoss,
                                    plain(lambda a, b, reduction=reduction: F.mse_loss(a, b, reduction)),
                                    [randn(*shape, seed=1), randn(*shape, seed=2)], ())
       for reduction in ("mean", "sum", "none") for shape in ((5,), (3, 4), (2, 3, 2))},
    "mse-target-frozen": (loss.MSELoss, plain(lambda a, b: F.mse_loss(a, b)), [randn(3, 4, seed=1),
                                                                             randn(3, 4, seed=2)], (1,)),
}


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_loss_drop_ins_equal_the_textbook_rules(name):
    rule, make, arrays, frozen = LOSS_CASES[name]
    assert_fast_equals_textbook(make, arrays, rule, frozen=frozen, exact_output=True)


@pytest.mark.parametrize("name", ["softmax-(2, 3, 4)-axis1", "log_softmax-(3, 4)-axis0",
                                  "ce-index-mean-ignored-wTrue-smooth0.2", "ce-prob-none-wTrue-smooth0.3",
                                  "mse-mean-(3, 4)"])
def test_loss_drop_ins_in_float32(name):
    rule, make, arrays, frozen = LOSS_CASES[name]
    arrays = [a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a for a in arrays]
    fast, _ = assert_fast_equals_textbook(make, arrays, rule, frozen=frozen, exact_output=True)
    assert fast[0].dtype == np.float32


@pytest.mark.parametrize("name", ["softmax-(2, 3, 4)-axis1", "log_softmax-(3, 4)-axis-1",
                                  "ce-index-mean-ignored-wTrue-smooth0.2", "ce-prob-sum-wTrue-smooth0.3",
                                  "mse-none-(3, 4)"])
def test_loss_drop_ins_on_the_gpu_path(standin, name):
    rule, make, arrays, frozen = LOSS_CASES[name]
    assert_fast_equals_textbook(make, arrays, rule, device="cuda", frozen=frozen, exact_output=True)


def test_every_row_ignored_gives_nan_and_zero_gradients_on_both_paths():
    rule, make, arrays, frozen = LOSS_CASES["ce-index-mean-all-ignored-wFalse-smooth0.2"]
    fast, textbook = assert_fast_equals_textbook(make, arrays, rule, frozen=frozen, exact_output=True)
    assert np.isnan(fast[0]) and np.isnan(textbook[0])
    np.testing.assert_array_equal(fast[1][0], np.zeros((5, 4)))


# ----- Dropout --------------------------------------------------------------------------------------------------
def dropout_maker(p):
    def make():
        mg.manual_seed(7)  # the same mask on both paths
        return (lambda x: dropout.Dropout.apply(x, p=p)), []
    return make


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.6, 1.0])
def test_dropout_drop_in_equals_the_textbook_rule_bit_for_bit(p, dtype):
    fast, textbook = assert_fast_equals_textbook(dropout_maker(p), [randn(40, 50, seed=1).astype(dtype)],
                                                 dropout.Dropout, rtol=0, exact_output=True)
    np.testing.assert_array_equal(fast[1][0], textbook[1][0])
    assert fast[2] is fast_dropout.Dropout


def test_dropout_drop_in_on_the_gpu_path(standin):
    fast, textbook = assert_fast_equals_textbook(dropout_maker(0.3), [randn(40, 50, seed=1)], dropout.Dropout,
                                                 device="cuda", rtol=0, exact_output=True)
    np.testing.assert_array_equal(fast[1][0], textbook[1][0])


def test_the_loss_drop_ins_are_the_fast_loss_classes():
    for rule in (loss.Softmax, loss.LogSoftmax, loss.CrossEntropy, loss.MSELoss):
        assert mg.config.drop_ins[rule] is getattr(fast_loss, rule.__name__)
        with mg.config.textbook():
            assert mg.config.chosen(rule) is rule


# ----- Adam's step -----------------------------------------------------------------------------------------------
def adam_arrays(shape, dtype, seed=0):
    """p, m, v (v >= 0) and grad, as after a few steps."""
    rng = np.random.default_rng(seed)
    p, m, v, grad = (rng.standard_normal(shape).astype(dtype) * scale for scale in (1, 0.1, 0.1, 1))
    return p, m, np.abs(v), grad


ADAM_ARGUMENTS = (0.9, 0.999, (1 - 0.999 ** 3) ** 0.5, 1e-8, 1e-3 / (1 - 0.9 ** 3))

ADAM_ROUTES = {  # route: (shape, transposed, piece size, threads)
    "one-piece": ((30, 40), False, None, 1),
    "not-contiguous": ((30, 40), True, None, 3),
    "threads-and-pieces": ((700, 500), False, 12345, 3),
    "threads-one-piece-each": ((700, 500), False, None, 2),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route", list(ADAM_ROUTES))
def test_the_fast_adam_step_equals_the_textbook_step_bit_for_bit(monkeypatch, route, dtype):
    shape, transposed, piece, threads = ADAM_ROUTES[route]
    monkeypatch.setattr(mg.config, "threads", threads)
    if piece is not None:
        monkeypatch.setattr(fast_adam, "_PIECE", piece)
    arrays = adam_arrays(shape, dtype)
    if transposed:
        arrays = [a.T for a in arrays]
        assert not arrays[0].flags.c_contiguous
    if route.startswith("threads"):
        assert arrays[0].size > fast_adam._PARALLEL_SIZE
    fast, textbook = [a.copy() for a in arrays[:3]], [a.copy() for a in arrays[:3]]
    fast_adam.fast_adam_step(*fast, arrays[3], *ADAM_ARGUMENTS)
    adam.adam_step(*textbook, arrays[3], *ADAM_ARGUMENTS)
    for name, a, b, before in zip("pmv", fast, textbook, arrays):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert not np.array_equal(a, before), f"{name} did not change"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fast_adam_step_on_the_gpu_path_equals_the_textbook_step_on_the_cpu(standin, dtype):
    """The stand-in runs the fused kernel's emulation (one launch); the textbook step runs NumPy's lines."""
    p, m, v, grad = adam_arrays((1000,), dtype)
    on_gpu = [standin.asarray(a) for a in (p, m, v)]
    fast_adam.fast_adam_step(*on_gpu, standin.asarray(grad), *ADAM_ARGUMENTS)
    textbook_on_gpu = [standin.asarray(a) for a in (p, m, v)]
    adam.adam_step(*textbook_on_gpu, standin.asarray(grad), *ADAM_ARGUMENTS)
    on_cpu = [a.copy() for a in (p, m, v)]
    adam.adam_step(*on_cpu, grad, *ADAM_ARGUMENTS)
    for name, fast, textbook, cpu in zip("pmv", on_gpu, textbook_on_gpu, on_cpu):
        np.testing.assert_array_equal(fast.get(), cpu, err_msg=name)
        np.testing.assert_array_equal(textbook.get(), cpu, err_msg=name)


def adam_training(name, dtype, textbook, steps=3, **options):
    """The weight and second moment after a few steps of Adam or AdamW on one weight."""
    rng = np.random.default_rng(1)
    weight = mg.tensor(rng.standard_normal((40, 30)).astype(dtype), requires_grad=True)
    optimizer = getattr(mg.optim, name)([weight], lr=0.01, **options)
    with mg.config.textbook() if textbook else contextlib.nullcontext():
        assert mg.config.chosen(adam.adam_step) is (adam.adam_step if textbook else fast_adam.fast_adam_step)
        for _ in range(steps):
            weight.grad = mg.tensor(rng.standard_normal((40, 30)).astype(dtype))
            optimizer.step()
    return weight.numpy(), optimizer.state[weight]["exp_avg_sq"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, options", [("Adam", {}), ("Adam", {"weight_decay": 0.1}),
                                           ("AdamW", {"weight_decay": 0.1})])
def test_adam_with_the_fast_step_trains_as_with_the_textbook_step_bit_for_bit(name, options, dtype):
    fast, textbook = (adam_training(name, dtype, flag, **options) for flag in (False, True))
    for a, b in zip(fast, textbook):
        np.testing.assert_array_equal(a, b)


@requires_torch
def test_a_big_weight_updated_in_threads_and_pieces_matches_torch(monkeypatch):
    monkeypatch.setattr(mg.config, "threads", 2)
    monkeypatch.setattr(fast_adam, "_PIECE", 12345)  # an odd size: each thread's slice ends in a shorter piece
    rng = np.random.default_rng(1)
    mine = mg.tensor(rng.standard_normal((700, 500)), requires_grad=True)
    optimizer = mg.optim.Adam([mine], lr=0.01, weight_decay=0.1)
    rng = np.random.default_rng(1)
    theirs = torch.tensor(rng.standard_normal((700, 500)), requires_grad=True)
    reference = torch.optim.Adam([theirs], lr=0.01, weight_decay=0.1, foreach=False)
    for _ in range(3):
        grad = rng.standard_normal((700, 500))
        mine.grad, theirs.grad = mg.tensor(grad), torch.tensor(grad)
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(mine.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
