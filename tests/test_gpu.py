"""The GPU (CuPy) computes what the CPU (NumPy) computes: every op, the optimizers, a training run.

Every test here but the first two needs CuPy and a GPU and skips itself
without them; CI has neither. The first two run everywhere: minigrad imports
and works with CuPy unavailable, and asking for "cuda" then fails clearly.
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


def gpu_available():
    try:
        mg.backend.array_module("cuda")
        return True
    except RuntimeError:
        return False


needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")
BLOCK_CUPY = "import sys; sys.modules['cupy'] = None\n"


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


def conv_case(stride, padding, kernel=3, channels=(3, 4)):
    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=padding)
    return fn, [(2, channels[0], 9, 8), (channels[1], channels[0], kernel, kernel), (channels[1],)]


def bn_case(training, shape):
    def fn(x, w, b):
        channels = x.shape[1]
        running = (mg.zeros(channels, dtype=x.dtype, device=x.device),
                   mg.ones(channels, dtype=x.dtype, device=x.device))
        return F.batch_norm(x, *running, w, b, training=training, momentum=0.1, eps=1e-3)
    return fn, [shape, shape[1:2], shape[1:2]]


# name -> (function of tensors, input shapes); labels are made inside the functions
OPS = {
    "add-broadcast": (lambda a, b: a + b, [(3, 4), (4,)]),
    "mul-div-pow": (lambda a, b: a * b / (b * b + 1) ** 1.5, [(3, 4), (3, 4)]),
    "exp-log": (lambda a: (a.exp() + 1).log(), [(5, 3)]),
    "sum-mean-var": (lambda a: a.sum(axis=0) + a.mean(axis=1, keepdims=True) + a.var(axis=0), [(4, 6)]),
    "matmul": (lambda a, b: a @ b, [(2, 5, 3), (3, 4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(6, 5), (3, 5), (3,)]),
    "conv2d-same": conv_case(1, "same"),
    "conv2d-same-even-kernel": conv_case(1, "same", kernel=2),
    "conv2d-stride2-pad1": conv_case(2, 1),
    "conv2d-valid-5x5": conv_case(1, 0, kernel=5),
    "max_pool2d-2": (lambda x: F.max_pool2d(x, 2), [(2, 3, 8, 7)]),
    "max_pool2d-3-stride2-pad1": (lambda x: F.max_pool2d(x, 3, 2, 1), [(2, 3, 9, 9)]),
    "max_pool2d-16-tiles": (lambda x: F.max_pool2d(x, 16), [(1, 2, 35, 33)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), [(2, 3, 9, 9)]),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 1), [(2, 3, 5, 4)]),
    "relu-sigmoid-tanh": (lambda x: F.relu(x) + F.sigmoid(x) * F.tanh(x), [(4, 5)]),
    "softmax-log_softmax": (lambda x: F.softmax(x, axis=1) + F.log_softmax(x, axis=0), [(4, 5)]),
    "cross_entropy-indices": (lambda x: F.cross_entropy(x, mg.tensor([0, 2, 1, 4], device=x.device)), [(4, 5)]),
    "cross_entropy-probabilities": (lambda x, t: F.cross_entropy(x, F.softmax(t, axis=1), reduction="sum"),
                                    [(4, 5), (4, 5)]),
    "mse_loss": (lambda a, b: F.mse_loss(a, b), [(3, 4), (3, 4)]),
    "batch_norm-train-4d": bn_case(True, (4, 3, 5, 5)),
    "batch_norm-train-2d": bn_case(True, (8, 6)),
    "batch_norm-eval": bn_case(False, (4, 3, 5, 5)),
    "shape-ops": (lambda a: a.reshape(6, 4).transpose(1, 0)[1:3].flatten(), [(2, 3, 4)]),
}


def run_op(fn, arrays, device, dtype):
    inputs = [mg.tensor(a.astype(dtype), device=device, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(mg.tensor(np.linspace(-1, 1, out.numel()).reshape(out.shape).astype(dtype), device=device))
    return out.numpy(), [t.grad.numpy() for t in inputs]


@needs_gpu
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-12), (np.float32, 1e-5, 1e-6)])
def test_every_op_on_the_gpu_equals_the_cpu(name, dtype, rtol, atol):
    fn, shapes = OPS[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    cpu_out, cpu_grads = run_op(fn, arrays, "cpu", dtype)
    gpu_out, gpu_grads = run_op(fn, arrays, "cuda", dtype)
    np.testing.assert_allclose(gpu_out, cpu_out, rtol=rtol, atol=atol)
    for gpu_grad, cpu_grad in zip(gpu_grads, cpu_grads):
        np.testing.assert_allclose(gpu_grad, cpu_grad, rtol=rtol, atol=atol)


@needs_gpu
def test_fused_kernels_equal_the_numpy_code_on_large_inputs():
    """im2col/col2im kernels against the CPU's slice loops on seed-sized shapes and every padding kind."""
    from minigrad.ops import conv
    cupy = mg.backend.array_module("cuda")
    rng = np.random.default_rng(1)
    for x_shape, kernel, stride, padding in [((8, 32, 14, 14), (5, 5), (1, 1), ((2, 2), (2, 2))),
                                             ((3, 20, 17, 16), (2, 2), (1, 1), ((0, 1), (0, 1))),
                                             ((2, 3, 11, 9), (3, 2), (2, 3), ((1, 1), (0, 0)))]:
        x = rng.standard_normal(x_shape).astype(np.float32)
        out_size = conv.output_size(x_shape[2:], kernel, stride, padding)
        cols = conv.im2col(x, kernel, stride, padding)
        np.testing.assert_array_equal(cupy.asnumpy(conv.im2col(cupy.asarray(x), kernel, stride, padding)), cols)
        grad_cols = rng.standard_normal((x_shape[1], *kernel, x_shape[0], *out_size)).astype(np.float32)
        np.testing.assert_allclose(cupy.asnumpy(conv.col2im(cupy.asarray(grad_cols), x_shape, stride, padding)),
                                   conv.col2im(grad_cols, x_shape, stride, padding), rtol=1e-5, atol=1e-5)


def small_model(device, dtype=mg.float64):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    return model.to(device).double() if dtype == mg.float64 else model.to(device)


@needs_gpu
@pytest.mark.parametrize("make", [lambda p: mg.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
                                  lambda p: mg.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
                                  lambda p: mg.optim.AdamW(p, lr=1e-2)])
def test_optimizers_on_the_gpu_equal_the_cpu(make):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 1, 8, 8)), rng.integers(0, 10, 16)
    results = []
    for device in ("cpu", "cuda"):
        model = small_model(device)
        optimizer = make(model.parameters())
        for _ in range(5):
            loss = F.cross_entropy(model(mg.tensor(x, device=device)), mg.tensor(y, device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results.append({k: v.numpy() for k, v in model.state_dict().items()})
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-9, atol=1e-11, err_msg=key)


@needs_gpu
def test_a_short_training_run_follows_the_cpu_loss_curve():
    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64)
    curves = []
    for device in ("cpu", "cuda"):
        mg.manual_seed(0)
        from models import build
        model = build("mnist_bn", dropout=0.0).to(device)  # dropout draws differ between NumPy and CuPy
        optimizer = mg.optim.Adam(model.parameters(), lr=5e-4)
        losses = []
        for step in range(20):
            batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
            loss = F.cross_entropy(model(mg.tensor(images[batch], device=device)),
                                   mg.tensor(labels[batch], device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        curves.append(losses)
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-3)


@needs_gpu
def test_checkpoints_move_between_devices(tmp_path):
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


@needs_gpu
def test_mixing_devices_names_both():
    with pytest.raises(RuntimeError, match="cpu.*cuda:0|cuda:0.*cpu"):
        mg.ones(3) + mg.ones(3, device="cuda")


@needs_gpu
def test_manual_seed_seeds_cupy():
    mg.manual_seed(5)
    a = mg.randn(4, device="cuda").numpy()
    mg.manual_seed(5)
    np.testing.assert_array_equal(mg.randn(4, device="cuda").numpy(), a)


@needs_gpu
def test_train_script_runs_on_the_gpu(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "mlp_bn", "--device", "cuda",
                             "--epochs", "2", "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert json.load(open(out / "metrics.json"))["test_accuracy"] > 0.5
