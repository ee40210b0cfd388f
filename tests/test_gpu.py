"""The GPU (CuPy) computes what the CPU (NumPy) computes: every op, the optimizers, the seed models, the scripts.

These tests run on every change: on a real GPU where one is usable, else on
the strict CuPy stand-in (``tests/standin``, see its docstring), which runs
minigrad's GPU code on NumPy and refuses what real CuPy refuses. The
``cupy`` fixture (conftest.py) puts the right one in place for each test;
``MINIGRAD_TEST_CUPY=real`` or ``standin`` chooses by hand.

Tolerances are honest: a float32 result, on either device, is compared with
the CPU's float64 result within float32's own rounding, never a float32
trajectory with another one.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")
needs_mnist = pytest.mark.skipif(not os.path.isdir(MNIST), reason="the shared MNIST files are not here")
BLOCK_CUPY = "import sys; sys.modules['cupy'] = None\n"


@pytest.fixture
def two_gpus(cupy):
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    return cupy


def test_minigrad_imports_and_trains_without_cupy():
    code = BLOCK_CUPY + (
        "import minigrad as mg, minigrad.nn.functional as F\n"
        "x = mg.randn(4, 3, requires_grad=True)\n"
        "F.cross_entropy(x, mg.tensor([0, 1, 2, 0])).backward()\n"
        "assert x.grad is not None and sys.modules['cupy'] is None\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_asking_for_cuda_without_cupy_says_how_to_get_it():
    code = BLOCK_CUPY + (
        "import minigrad as mg\n"
        "for make in (lambda: mg.zeros(2, device='cuda'), lambda: mg.zeros(2).to('cuda'),\n"
        "             lambda: mg.nn.Linear(2, 2).to('cuda')):\n"
        "    try:\n"
        "        make()\n"
        "    except RuntimeError as error:\n"
        "        assert 'CuPy' in str(error) and 'pip install' in str(error), error\n"
        "    else:\n"
        "        raise AssertionError('no error')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# ----- every op, forward and gradients -------------------------------------------------

def conv_case(stride, padding, kernel=3, channels=(3, 4), bias=True):
    def fn(x, w, *b):
        return F.conv2d(x, w, *b, stride=stride, padding=padding)
    shapes = [(2, channels[0], 9, 8), (channels[1], channels[0], kernel, kernel)]
    return fn, shapes + [(channels[1],)] * bias


def bn_case(training, shape, affine=True, momentum=0.1):
    def fn(x, *affine_params):
        channels = x.shape[1]
        running = (mg.zeros(channels, dtype=x.dtype, device=x.device),
                   mg.ones(channels, dtype=x.dtype, device=x.device))
        return F.batch_norm(x, *running, *affine_params, training=training, momentum=momentum, eps=1e-3)
    return fn, [shape] + [shape[1:2]] * (2 * affine)


def bn_module_case(momentum):
    def fn(x):
        layer = nn.BatchNorm2d(x.shape[1], momentum=momentum).to(x.device).to(x.dtype)
        layer(x * 0.5)  # a first batch, so that momentum None's average has two terms
        return layer(x) + layer.running_mean.reshape(1, -1, 1, 1) + layer.running_var.reshape(1, -1, 1, 1)
    return fn, [(4, 3, 5, 5)]


def index(array, device):
    return mg.tensor(np.asarray(array), device=device)


# name -> (function of tensors, input shapes); index arrays and labels are made inside the functions
OPS = {
    "add-broadcast": (lambda a, b: a + b, [(3, 4), (4,)]),
    "sub-neg": (lambda a, b: -(a - b) - 2 - a, [(3, 4), (3, 1)]),
    "mul-div": (lambda a, b: a * b / (b * b + 1) + 3 / (a * a + 1), [(3, 4), (3, 4)]),
    "pow-scalar": (lambda a: (a * a + 1) ** 1.5 + a ** 2, [(3, 4)]),
    "pow-tensor-exponent": (lambda a, b: (a * a + 0.5) ** b + 2 ** b, [(3, 4), (3, 4)]),
    "exp-log-sqrt": (lambda a: (a.exp() + 1).log() + (a * a + 1).sqrt(), [(5, 3)]),
    "abs-clip": (lambda a: a.abs() + a.clip(-0.5, 0.7) + a.clip(lo=0.1) + a.clip(hi=-0.2), [(4, 5)]),
    "sum-mean": (lambda a: a.sum(axis=0) + a.mean(axis=1, keepdims=True) + a.sum() + a.mean(), [(4, 6)]),
    "var": (lambda a: a.var(axis=0) + a.var(axis=1, keepdims=True, unbiased=True) + a.var(), [(4, 6)]),
    "max": (lambda a: a.max(axis=1) + a.max(axis=0, keepdims=True).sum() + a.max(), [(4, 6)]),
    "matmul": (lambda a, b: a @ b, [(2, 5, 3), (3, 4)]),
    "matmul-vector": (lambda a, b: a @ b, [(5, 3), (3,)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(6, 5), (3, 5), (3,)]),
    "linear-no-bias": (lambda x, w: F.linear(x, w), [(6, 5), (3, 5)]),
    "conv2d-same": conv_case(1, "same"),
    "conv2d-same-even-kernel": conv_case(1, "same", kernel=2),
    "conv2d-stride2-pad1": conv_case(2, 1),
    "conv2d-valid-5x5": conv_case(1, 0, kernel=5),
    "conv2d-no-bias": conv_case(1, 1, bias=False),
    "conv2d-16-channels": conv_case(1, 1, channels=(16, 4)),  # the CPU's Winograd route
    "max_pool2d-2": (lambda x: F.max_pool2d(x, 2), [(2, 3, 8, 7)]),
    "max_pool2d-3-stride2-pad1": (lambda x: F.max_pool2d(x, 3, 2, 1), [(2, 3, 9, 9)]),
    "max_pool2d-16-tiles": (lambda x: F.max_pool2d(x, 16), [(1, 2, 35, 33)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), [(2, 3, 9, 9)]),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 1), [(2, 3, 5, 4)]),
    "relu-sigmoid-tanh": (lambda x: F.relu(x) + F.sigmoid(x) * F.tanh(x), [(4, 5)]),
    "softmax-log_softmax": (lambda x: F.softmax(x, axis=1) + F.log_softmax(x, axis=0), [(4, 5)]),
    "cross_entropy-indices": (lambda x: F.cross_entropy(x, index([0, 2, 1, 4], x.device)), [(4, 5)]),
    "cross_entropy-none": (lambda x: F.cross_entropy(x, index([3, 2, 1, 0], x.device), reduction="none"),
                           [(4, 5)]),
    "cross_entropy-probabilities": (lambda x, t: F.cross_entropy(x, F.softmax(t, axis=1), reduction="sum"),
                                    [(4, 5), (4, 5)]),
    "cross_entropy-weight-ignored-smoothing": (
        lambda x: F.cross_entropy(x, index([0, -100, 3, 4], x.device), label_smoothing=0.1,
                                  weight=mg.tensor([0.5, 1.0, 2.0, 0.3, 1.5], dtype=x.dtype, device=x.device)),
        [(4, 5)]),
    "cross_entropy-a-class-ignored-none": (
        lambda x: F.cross_entropy(x, index([2, 2, 1, 0], x.device), ignore_index=2, reduction="none",
                                  label_smoothing=0.2), [(4, 5)]),
    "cross_entropy-all-ignored": (lambda x: F.cross_entropy(x, index([-100] * 4, x.device), label_smoothing=0.1),
                                  [(4, 5)]),
    "cross_entropy-probabilities-weight-smoothing": (
        lambda x, t, w: F.cross_entropy(x, F.softmax(t, axis=1), weight=w * w + 0.5, label_smoothing=0.3),
        [(4, 5), (4, 5), (5,)]),
    "mse_loss": (lambda a, b: F.mse_loss(a, b), [(3, 4), (3, 4)]),
    "batch_norm-train-4d": bn_case(True, (4, 3, 5, 5)),
    "batch_norm-train-2d": bn_case(True, (8, 6)),
    "batch_norm-eval": bn_case(False, (4, 3, 5, 5)),
    "batch_norm-no-affine": bn_case(True, (4, 3, 5, 5), affine=False),
    "BatchNorm2d-momentum-None": bn_module_case(None),
    "shape-ops": (lambda a: a.reshape(6, 4).transpose(1, 0)[1:3].flatten() + a.permute(2, 0, 1).T.sum(),
                  [(2, 3, 4)]),
    "index-ints-first": (lambda a: a[1, :, 3:11:2, index([1, 4, 4], a.device), 0:2], [(2, 3, 12, 5, 4)]),
    "index-array-then-int": (lambda a: a[:, index([0, 2, 2], a.device), :, 1], [(2, 3, 12, 5, 4)]),
    "index-0d-array-and-mask": (lambda a: a[:, index(1, a.device), :, a[0, 0, 0, :, 0] > 0, 0],
                                [(2, 3, 12, 5, 4)]),
    "index-none-true-ellipsis": (lambda a: a[index([1, 0, 1], a.device), None, ..., True, 2], [(2, 3, 4)]),
    "var-correction": (lambda a: a.var(axis=1, correction=2) + a.var(correction=0.5), [(4, 6)]),
    "reductions-of-0d": (lambda a: a.sum().sum(0) + a.mean().mean(-1) + a.max().max(0, keepdims=True), [(3,)]),
    "index-integer-repeats": (lambda a: a[index([0, 2, 0, 0, 1], a.device)] * 3, [(3, 4)]),
    "index-two-arrays-repeats": (lambda a: a[index([1, 1, 0], a.device), index([2, 2, 3], a.device)], [(3, 4)]),
    "index-boolean": (lambda a: a[a > 0.1], [(4, 5)]),
    "index-mixed": (lambda a: a[1:, index([0, 0, 2], a.device)], [(3, 4)]),
    "cast": (lambda a: a.to(mg.float32).to(mg.float64) * a + a.to(mg.float32).sum().to(a.dtype), [(3, 4)]),
}


def run_op(fn, arrays, device, dtype):
    inputs = [mg.tensor(a.astype(dtype), device=device, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    upstream = np.linspace(-1, 1, out.numel()).reshape(out.shape).astype(dtype)
    out.backward(mg.tensor(upstream, device=device))
    return out.numpy(), [t.grad.numpy() for t in inputs]


def assert_close_to_float64(result, reference, dtype, name):
    """float64 to 1e-10; float32 within a few float32 roundings of the float64 result (relative to its scale)."""
    scale = max(1.0, float(np.abs(reference).max(initial=0)))
    rtol, atol = (1e-10, 1e-12 * scale) if dtype == np.float64 else (2e-5, 5e-6 * scale)
    np.testing.assert_allclose(result, reference, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_op_on_the_gpu_equals_the_cpu_in_float64(cupy, name, dtype):
    fn, shapes = OPS[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    reference_out, reference_grads = run_op(fn, arrays, "cpu", np.float64)
    gpu_out, gpu_grads = run_op(fn, arrays, "cuda", dtype)
    assert_close_to_float64(gpu_out, reference_out, dtype, name)
    for k, (gpu_grad, reference_grad) in enumerate(zip(gpu_grads, reference_grads)):
        assert_close_to_float64(gpu_grad, reference_grad, dtype, f"{name}: gradient of input {k}")


def test_pow_gradients_at_zero_as_pytorch(cupy):
    """d/da a^b is 0 where b = 0, d/db a^b is 0 where a = 0 and b >= 0 (PyTorch's values), on both devices."""
    for device in ("cpu", "cuda"):
        a = mg.tensor([0.0, 0.0, 2.0, -2.0], dtype=mg.float64, device=device, requires_grad=True)
        b = mg.tensor([0.0, 2.0, 0.0, 2.0], dtype=mg.float64, device=device, requires_grad=True)
        (a ** b).sum().backward()
        np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0, 0.0, -4.0])
        np.testing.assert_allclose(b.grad.numpy(), [0.0, 0.0, np.log(2), np.nan])


def test_relu_passes_no_nan_or_inf_where_it_is_flat(cupy):
    """PyTorch's threshold_backward: 0 where y <= 0 even for a NaN or inf upstream gradient, on both devices."""
    for device in ("cpu", "cuda"):
        x = mg.tensor([-1.0, 0.0, 2.0, -3.0, 1.0], device=device, requires_grad=True)
        x.relu().backward(mg.tensor([np.nan, np.inf, 1.0, -np.inf, np.nan], device=device))
        np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0, 0.0, np.nan])


def test_comparisons_move_an_array_operand_to_the_device(cupy):
    t = mg.tensor([1.0, 2.0, 3.0], device="cuda")
    host = np.array([2.0, 2.0, 2.0])
    for result, expected in [(t > host, [False, False, True]), (t <= host, [True, True, False]),
                             (t == host, [False, True, False]), (t != 2.0, [True, False, True]),
                             (t < mg.tensor(host, device="cuda"), [True, False, False])]:
        assert result.device == "cuda:0"
        np.testing.assert_array_equal(result.numpy(), expected)
    with pytest.raises(RuntimeError, match="cuda:0.*cpu"):
        t > mg.tensor(host)


def test_indexing_backward_adds_repeats_in_numpys_order(cupy):
    """Repeated indices: the GPU adds them one by one in index order, so the bits are NumPy add.at's."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50,)).astype(np.float32)
    idx = rng.integers(0, 5, 4000)
    upstream = (rng.standard_normal(4000) * 10 ** rng.uniform(-4, 4, 4000)).astype(np.float32)
    grads = []
    for device in ("cpu", "cuda"):
        t = mg.tensor(x, device=device, requires_grad=True)
        t[mg.tensor(idx, device=device)].backward(mg.tensor(upstream, device=device))
        grads.append(t.grad.numpy())
    np.testing.assert_array_equal(grads[1], grads[0])


def test_dropout_on_the_gpu_replays_from_the_saved_generator_state(cupy):
    mg.manual_seed(7)
    x = mg.ones(200, 50, device="cuda", requires_grad=True)
    state = json.loads(json.dumps(mg.backend.rng_state()))  # as a checkpoint stores it
    y = F.dropout(x, 0.3)
    first = y.numpy()
    F.dropout(x, 0.3)
    mg.backend.set_rng_state(state)
    np.testing.assert_array_equal(F.dropout(x, 0.3).numpy(), first)
    kept = first != 0
    assert abs(kept.mean() - 0.7) < 0.02 and np.allclose(first[kept], 1 / 0.7)
    (y * 3).sum().backward()  # dy/dx is the mask: 0 where dropped, 1 / (1 - p) where kept
    np.testing.assert_allclose(x.grad.numpy(), 3 * first)


def test_argmax_on_the_gpu(cupy):
    values = np.random.default_rng(0).standard_normal((5, 7))
    t = mg.tensor(values, device="cuda")
    np.testing.assert_array_equal(t.argmax(axis=1).numpy(), values.argmax(axis=1))
    assert t.argmax().item() == values.argmax()


def test_gpu_random_numbers_are_uniform_and_normal(cupy):
    mg.manual_seed(0)
    uniform = mg.rand(100000, device="cuda").numpy()
    normal = mg.randn(100000, dtype=mg.float64, device="cuda").numpy()
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    assert abs(normal.mean()) < 0.02 and abs(normal.std() - 1) < 0.02
    assert abs((np.abs(normal) < 1).mean() - 0.6827) < 0.01
    mg.manual_seed(0)
    np.testing.assert_array_equal(mg.rand(100000, device="cuda").numpy(), uniform)


CONV_GEOMETRIES = [((8, 32, 14, 14), (5, 5), (1, 1), ((2, 2), (2, 2))),  # mnist_bn's second layer
                   ((3, 20, 17, 16), (2, 2), (1, 1), ((0, 1), (0, 1))),  # "same" with an even kernel
                   ((2, 3, 11, 9), (3, 2), (2, 3), ((1, 1), (0, 0)))]


def check_conv_kernels(cupy):
    """im2col/col2im kernels against the CPU's slice loops on seed-sized shapes and every padding kind."""
    from minigrad.fast import conv
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        for x_shape, kernel, stride, padding in CONV_GEOMETRIES:
            x = rng.standard_normal(x_shape).astype(dtype)
            out_size = conv.output_size(x_shape[2:], kernel, stride, padding)
            cols = conv.im2col(x, kernel, stride, padding)
            np.testing.assert_array_equal(cupy.asnumpy(conv.im2col(cupy.asarray(x), kernel, stride, padding)), cols)
            grad_cols = rng.standard_normal((x_shape[1], *kernel, x_shape[0], *out_size)).astype(dtype)
            expected = conv.col2im(grad_cols, x_shape, stride, padding)
            got = cupy.asnumpy(conv.col2im(cupy.asarray(grad_cols), x_shape, stride, padding))
            np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-14,
                                       atol=1e-6 if dtype == np.float32 else 1e-14)


def test_conv_kernels_equal_the_numpy_code(cupy):
    check_conv_kernels(cupy)


# ----- optimizers and the seed models -----------------------------------------------------

def small_model(device, dtype=mg.float64):
    mg.manual_seed(0)
    # no conv bias: before BatchNorm its true gradient is 0, and Adam would turn rounding noise into lr-sized steps
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same", bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    return model.to(device).to(dtype)


OPTIMIZERS = {"sgd-nesterov": lambda p: mg.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
              "adam": lambda p: mg.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
              "adamw": lambda p: mg.optim.AdamW(p, lr=1e-2)}


def train_steps(device, dtype, make_optimizer, steps=5):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 1, 8, 8)), rng.integers(0, 10, 16)
    model = small_model(device, dtype)
    optimizer = make_optimizer(model.parameters())
    for _ in range(steps):
        loss = F.cross_entropy(model(mg.tensor(x.astype(dtype), device=device)), mg.tensor(y, device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {key: value.numpy() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizers_on_the_gpu_equal_the_cpu(cupy, name):
    cpu = train_steps("cpu", np.float64, OPTIMIZERS[name])
    gpu = train_steps("cuda", np.float64, OPTIMIZERS[name])
    for key in cpu:
        np.testing.assert_allclose(gpu[key], cpu[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_the_adam_kernel_rounds_as_numpys_adam(cupy):
    """One fused Adam launch against the textbook adam_step's NumPy lines, float32: the same bits."""
    from minigrad.fast import cuda_kernels
    from minigrad.optim.adam import adam_step
    rng = np.random.default_rng(0)
    p, m, v, grad = (rng.standard_normal(1000).astype(np.float32) * s for s in (1, 0.1, 0.1, 1))
    v = np.abs(v)
    arguments = (0.9, 0.999, (1 - 0.999 ** 3) ** 0.5, 1e-8, 1e-3 / (1 - 0.9 ** 3))
    expected = [a.copy() for a in (p, m, v)]
    adam_step(*expected, grad, *arguments)
    on_gpu = [cupy.asarray(a) for a in (p, m, v)]
    cuda_kernels.adam_update(*on_gpu, cupy.asarray(grad), *arguments)
    for name, got, want in zip("pmv", on_gpu, expected):
        np.testing.assert_array_equal(cupy.asnumpy(got), want, err_msg=name)


SEED_MODELS = {"mnist_bn": (1, 28), "cifar_bn": (3, 32), "mlp_bn": None, "catsdogs_logreg": (3, 32),
               "catsdogs_wide": (3, 32), "catsdogs_deep": (3, 128)}  # (channels, image size)


def one_training_step(name, device):
    from models import build
    mg.manual_seed(0)
    options = {"dropout": 0.0} if name == "mnist_bn" else {}  # the devices draw different masks
    if "catsdogs" in name:
        options["image_size"] = SEED_MODELS[name][1]
    model = build(name, **options).double().to(device)
    rng = np.random.default_rng(0)
    shape = (20,) if SEED_MODELS[name] is None else (SEED_MODELS[name][0], SEED_MODELS[name][1], SEED_MODELS[name][1])
    x, y = rng.standard_normal((8, *shape)), rng.integers(0, 2 if "catsdogs" in name else 10, 8)
    optimizer = mg.optim.Adam(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(mg.tensor(x, device=device)), mg.tensor(y, device=device))
    loss.backward()
    grads = {key: p.grad.numpy() for key, p in model.named_parameters()}
    before = {key: p.numpy().copy() for key, p in model.named_parameters()}
    optimizer.step()
    return loss.item(), grads, before, {key: value.numpy() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", list(SEED_MODELS))
def test_one_training_step_of_each_seed_model_equals_the_cpu(cupy, name):
    """float64 on both devices: the loss, every gradient and every weight after one Adam step.

    A conv bias just before BatchNorm has a true gradient of 0 (BatchNorm
    subtracts it again); what the devices compute for it is rounding noise,
    and Adam's first step moves a weight by lr whatever its gradient's size.
    For such a weight (gradient under 1e-10 of the model's largest) the check
    is only that it moved by at most lr."""
    cpu_loss, cpu_grads, before, cpu_state = one_training_step(name, "cpu")
    gpu_loss, gpu_grads, _, gpu_state = one_training_step(name, "cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-10)
    scale = max(float(np.abs(g).max()) for g in cpu_grads.values())
    for key in cpu_grads:
        np.testing.assert_allclose(gpu_grads[key], cpu_grads[key], rtol=1e-7, atol=1e-9 * scale, err_msg=key)
    noise = {key for key, g in cpu_grads.items() if np.abs(g).max() < 1e-10 * scale}
    assert noise <= {key for key in cpu_grads if key.endswith("bias")}, noise
    for key in cpu_state:
        if key in noise:
            assert np.abs(gpu_state[key] - before[key]).max() <= 1e-3 * (1 + 1e-6), key
        else:
            np.testing.assert_allclose(gpu_state[key], cpu_state[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_a_float32_training_run_stays_as_near_the_float64_one_as_the_cpus(cupy):
    """20 steps of mnist_bn in float32 on the GPU and on the CPU, against float64 on the CPU.

    Training is chaotic: two valid float32 routes drift apart step by step
    (here by up to 0.5% in 20 steps). So both float32 curves are held to the
    float64 one tightly in the first steps, before the drift has grown, and
    loosely after, the same bounds for the GPU as for the CPU."""
    from models import build
    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 1, 28, 28)), rng.integers(0, 10, 64)
    curves = []
    for device, dtype in (("cpu", mg.float64), ("cpu", mg.float32), ("cuda", mg.float32)):
        mg.manual_seed(0)
        model = build("mnist_bn", dropout=0.0).to(dtype).to(device)
        optimizer = mg.optim.Adam(model.parameters(), lr=5e-4)
        losses = []
        for step in range(20):
            batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
            loss = F.cross_entropy(model(mg.tensor(images[batch], dtype=dtype, device=device)),
                                   mg.tensor(labels[batch], device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        curves.append(np.array(losses))
    reference, cpu32, gpu32 = curves
    np.testing.assert_allclose(gpu32[:5], reference[:5], rtol=1e-5)
    np.testing.assert_allclose(cpu32[:5], reference[:5], rtol=1e-5)  # the same closeness, on the CPU
    # then the drift: both float32 runs stay within 1% of float64 (0.03-0.5% seen in 20 steps)
    np.testing.assert_allclose(gpu32, reference, rtol=1e-2)
    np.testing.assert_allclose(cpu32, reference, rtol=1e-2)
    assert gpu32[-4:].mean() < gpu32[:4].mean() - 0.5  # and it learns


def test_one_mnist_bn_step_waits_for_the_gpu_once(cupy):
    """Forward, backward, Adam and the loss's .item(): one device-to-host sync in all (the stand-in counts them)."""
    if not hasattr(cupy, "_standin"):
        pytest.skip("the sync counter is the stand-in's")
    from models import build
    model = build("mnist_bn").to("cuda")
    optimizer = mg.optim.Adam(model.parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.random((8, 1, 28, 28)).astype(np.float32), device="cuda")
    y = mg.tensor(rng.integers(0, 10, 8), device="cuda")
    for step in range(2):  # the second step: nothing left to set up
        before = cupy._standin.syncs
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
    assert cupy._standin.syncs - before == 1


def test_a_bad_label_on_the_gpu_fails_at_the_next_copy_to_the_host(cupy):
    logits = mg.randn(4, 3, device="cuda", requires_grad=True)
    loss = F.cross_entropy(logits, mg.tensor([0, 1, 3, 2], device="cuda"))
    loss.backward()  # no wait for the GPU, so no check yet
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\)"):
        loss.item()
    assert F.cross_entropy(logits, mg.tensor([0, 1, 2, 2], device="cuda")).item() > 0  # reported once


# ----- devices ----------------------------------------------------------------------------

def test_cuda_n_is_honoured(two_gpus):
    a = mg.randn(3, 4, device="cuda:1", requires_grad=True)
    assert a.device == "cuda:1" and mg.zeros(2, device="cuda:1").device == "cuda:1"
    assert mg.arange(3, device="cuda:1").device == "cuda:1" and mg.ones(2, device="cuda:1").device == "cuda:1"
    b = mg.randn(3, 4, device="cuda:0")
    moved = b.to("cuda:1")
    assert moved.device == "cuda:1" and moved.data is not b.data
    np.testing.assert_array_equal(moved.numpy(), b.numpy())
    ((a * moved).sum() + (a.exp() @ moved.T).mean()).backward()  # every kernel on GPU 1
    assert a.grad.device == "cuda:1"
    with pytest.raises(RuntimeError, match="cuda:1.*cuda:0"):
        a + b
    model = small_model("cuda:1", mg.float32)
    optimizer = mg.optim.Adam(model.parameters())
    F.cross_entropy(model(mg.randn(2, 1, 8, 8, device="cuda:1")), mg.tensor([1, 2], device="cuda:1")).backward()
    optimizer.step()
    assert {p.device for p in model.parameters()} == {"cuda:1"}


def test_gradients_flow_back_across_devices(two_gpus):
    a = mg.randn(3, device="cuda:0", requires_grad=True)
    (a.to("cuda:1") * 2).sum().backward()
    assert a.grad.device == "cuda:0"
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 2.0, 2.0])


def test_checkpoints_move_between_devices(cupy, tmp_path):
    gpu = small_model("cuda", mg.float32)
    mg.save({"model": gpu.state_dict()}, tmp_path / "gpu.npz")
    loaded = mg.load(tmp_path / "gpu.npz")
    assert all(t.device == "cpu" for t in loaded["model"].values())
    cpu = small_model("cpu", mg.float32)
    cpu.load_state_dict(loaded["model"])
    x = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    gpu.eval(), cpu.eval()
    np.testing.assert_allclose(gpu(mg.tensor(x, device="cuda")).numpy(), cpu(mg.tensor(x)).numpy(), rtol=1e-5)
    assert mg.load(tmp_path / "gpu.npz", device="cuda")["model"]["0.weight"].device == "cuda:0"
    cpu.load_state_dict(mg.load(tmp_path / "gpu.npz", device="cuda")["model"])  # GPU values into a CPU model
    assert all(p.device == "cpu" for p in cpu.parameters())


def test_mixing_devices_names_both(cupy):
    with pytest.raises(RuntimeError, match="cpu.*cuda:0|cuda:0.*cpu"):
        mg.ones(3) + mg.ones(3, device="cuda")


def test_manual_seed_seeds_the_gpu(cupy):
    mg.manual_seed(5)
    a = mg.randn(4, device="cuda").numpy()
    mg.manual_seed(5)
    np.testing.assert_array_equal(mg.randn(4, device="cuda").numpy(), a)


def test_float32_products_are_not_tf32_whatever_the_environment(cupy, monkeypatch):
    from cupy._core import _routines_linalg as linalg
    monkeypatch.setenv("CUPY_TF32", "1")
    monkeypatch.setattr(mg.backend, "_checked_cupy", set())
    mg.zeros(1, device="cuda")
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT


# ----- the scripts on the GPU -----------------------------------------------------------------

@needs_mnist
def test_train_resumes_bit_for_bit_on_the_gpu_and_evaluate_agrees(cupy, tmp_path, monkeypatch, capsys):
    """Dropout (the GPU's generator), shuffling, augmentation and standardisation, interrupted and resumed."""
    from test_train import check_resume_bit_for_bit
    check_resume_bit_for_bit(tmp_path, monkeypatch, capsys, "--device", "cuda")


def test_train_script_runs_on_the_gpu(gpu_env, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "mlp_bn", "--device", "cuda",
                             "--epochs", "2", "--out", str(out), "--quiet"],
                            capture_output=True, text=True, cwd=ROOT, env=gpu_env)
    assert result.returncode == 0, result.stderr
    assert json.load(open(out / "metrics.json"))["test_accuracy"] > 0.5


def test_a_training_epoch_of_the_script_waits_for_the_gpu_only_at_its_end(cupy):
    """train.py keeps its loss and accuracy sums on the device: an epoch of 4 steps syncs twice, to read them."""
    if not hasattr(cupy, "_standin"):
        pytest.skip("the sync counter is the stand-in's")
    from models import training
    from test_train import train
    args = training.fill_defaults(train.parser().parse_args(["mlp_bn", "--device", "cuda", "--limit", "128", "--quiet"]))
    trainer = training.Trainer(args)
    trainer.train_epoch(lambda batches, desc: batches)  # the first epoch sets things up
    before = cupy._standin.syncs
    metrics = trainer.train_epoch(lambda batches, desc: batches)
    assert cupy._standin.syncs - before == 2
    assert 0 < metrics["train_loss"] < 3 and 0 <= metrics["train_accuracy"] <= 1
