"""models/torch_twin.py: the PyTorch twin computes what the minigrad network computes, forward and backward."""
from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from models import MODELS, build, torch_twin

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its speed

# small inputs: catsdogs_deep needs 2**7 pixels for its seven poolings, the other catsdogs models take 32
INPUT_SHAPES = {"mnist_bn": (1, 28, 28), "cifar_bn": (3, 32, 32), "mlp_bn": (20,), "catsdogs_logreg": (3, 32, 32),
                "catsdogs_wide": (3, 32, 32), "catsdogs_deep": (3, 128, 128)}


def seed_model(name):
    """The seed model (seeded, so every run is the same) and the shape of one input."""
    shape = INPUT_SHAPES[name]
    options = {"image_size": shape[-1]} if name.startswith("catsdogs") else {}
    mg.manual_seed(0)
    return build(name, **options), shape


def run_both(model, twin, x, labels=None):
    """Forward both on ``x``; with labels, also cross-entropy and backward. Returns (minigrad out, torch out)."""
    mine = mg.tensor(x)
    theirs = torch.tensor(x)
    out, twin_out = model(mine), twin(theirs)
    if labels is not None:
        F.cross_entropy(out, mg.tensor(labels)).backward()
        torch.nn.functional.cross_entropy(twin_out, torch.tensor(labels)).backward()
    return out.detach().numpy(), twin_out.detach().numpy()


def assert_same_state(model, twin, **tolerance):
    theirs = twin.state_dict()
    assert list(theirs) == list(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), theirs[key].numpy(), err_msg=key, **tolerance)


def assert_same_grads(model, twin, rtol=1e-4, atol=1e-5):
    twin_parameters = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names == list(twin_parameters)
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:  # frozen: no gradient in either
            assert parameter.grad is None and twin_parameters[name].grad is None, name
            continue
        assert parameter.grad is not None and twin_parameters[name].grad is not None, name
        np.testing.assert_allclose(parameter.grad.numpy(), twin_parameters[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_seed_models_twin_computes_the_same_forward_in_eval_mode(name):
    model, shape = seed_model(name)
    model.eval()
    for module in model.modules():  # running statistics that are not 0 and 1, so eval mode uses them
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.data[...] = np.linspace(-0.5, 0.5, module.num_features)
            module.running_var.data[...] = np.linspace(0.5, 2.0, module.num_features)
    twin = torch_twin.twin(model)
    assert not twin.training and not any(layer.training for layer in twin.modules())
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    with mg.no_grad(), torch.no_grad():
        out, twin_out = run_both(model, twin, x)
    np.testing.assert_allclose(out, twin_out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.usefixtures("fast_on")
def test_a_seed_models_twin_trains_the_same_forward_gradients_and_running_stats(name):
    model, shape = seed_model(name)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # the two frameworks draw different masks; p itself is checked below
    twin = torch_twin.twin(model)
    assert twin.training and all(layer.training for layer in twin.modules())
    assert_same_state(model, twin, rtol=0, atol=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    out, twin_out = run_both(model, twin, x, labels=np.array([0, 1, 1, 0]))
    np.testing.assert_allclose(out, twin_out, rtol=1e-4, atol=1e-5)
    assert_same_grads(model, twin)
    assert_same_state(model, twin, rtol=1e-5, atol=1e-6)  # running means and variances moved alike


def test_dropouts_probability_and_batch_norms_settings_are_carried():
    twin = torch_twin.twin(build("mnist_bn", dropout=0.3))
    dropout, = [layer for layer in twin if isinstance(layer, torch.nn.Dropout)]
    assert dropout.p == 0.3
    norm = twin[1]
    assert isinstance(norm, torch.nn.BatchNorm2d) and (norm.eps, norm.momentum) == (1e-3, 0.1)
    cifar = torch_twin.twin(build("cifar_bn"))
    assert cifar[1].weight is None and cifar[1].bias is not None  # TF's scale=False: no gamma


def conv_cases():
    return [nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
            nn.Conv2d(4, 8, 3, padding="same", dilation=(2, 1), groups=4, bias=False),
            nn.Conv2d(4, 4, (3, 2), stride=(1, 2), padding="valid", dilation=(1, 3), groups=4),
            nn.Conv2d(4, 6, 2, padding="same")]


@pytest.mark.parametrize("index", range(4))
def test_conv_with_dilation_and_groups_converts_forward_and_backward(index):
    mg.manual_seed(index)
    conv = conv_cases()[index]
    twin = torch_twin.twin(conv)
    assert (twin.dilation, twin.groups) == (conv.dilation, conv.groups)
    assert twin.weight.shape == tuple(conv.weight.shape)
    x = np.random.default_rng(index).standard_normal((2, 4, 9, 10)).astype(np.float32)
    mine, theirs = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, twin_out = conv(mine), twin(theirs)
    np.testing.assert_allclose(out.detach().numpy(), twin_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    upstream = np.random.default_rng(9).standard_normal(out.shape).astype(np.float32)
    out.backward(mg.tensor(upstream))
    twin_out.backward(torch.tensor(upstream))
    np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert_same_grads(conv, twin)


def test_every_layer_kind_converts_with_its_settings_and_names():
    mg.manual_seed(0)
    norm_no_stats = nn.BatchNorm2d(4, track_running_stats=False)
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(3, 4, 3, padding=1)), ("norm", nn.BatchNorm2d(4, momentum=None)),
        ("tanh", nn.Tanh()), ("avg", nn.AvgPool2d(3, stride=2, padding=1)), ("norm2", norm_no_stats),
        ("max", nn.MaxPool2d(2, stride=1)), ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()),
        ("fc", nn.Linear(4, 6, bias=False)), ("norm1d", nn.BatchNorm1d(6, affine=False, eps=1e-3)),
        ("sigmoid", nn.Sigmoid()), ("head", nn.Sequential(nn.Linear(6, 5), nn.ReLU())), ("softmax", nn.Softmax(axis=1))]))
    twin = torch_twin.twin(model)
    assert [name for name, _ in twin.named_children()] == [name for name, _ in model.named_children()]
    assert twin.norm.momentum is None and twin.norm2.running_mean is None and not twin.norm2.track_running_stats
    assert not twin.norm1d.affine and twin.norm1d.weight is None and twin.norm1d.eps == 1e-3
    assert (twin.avg.kernel_size, twin.avg.stride, twin.avg.padding) == (3, 2, 1)
    assert twin.softmax.dim == 1 and twin.fc.bias is None
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    for step in range(2):  # momentum=None: a cumulative average over the batches, in both
        out, twin_out = run_both(model, twin, x + step, labels=np.array([0, 1, 2, 3, 4]))
        np.testing.assert_allclose(out, twin_out, rtol=1e-4, atol=1e-6)
    assert_same_grads(model, twin)
    assert_same_state(model, twin, rtol=1e-5, atol=1e-6)
    model.eval()
    twin.eval()
    with mg.no_grad(), torch.no_grad():
        out, twin_out = run_both(model, twin, x)
    np.testing.assert_allclose(out, twin_out, rtol=1e-4, atol=1e-6)


def test_loss_modules_convert_with_their_settings():
    logits = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, -100, 1])
    loss = nn.CrossEntropyLoss(weight=mg.tensor([0.2, 1.0, 3.0]), label_smoothing=0.1, reduction="sum")
    twin = torch_twin.twin(loss)
    assert twin.weight.tolist() == pytest.approx([0.2, 1.0, 3.0]) and twin.label_smoothing == 0.1
    np.testing.assert_allclose(loss(mg.tensor(logits), mg.tensor(labels)).item(),
                               twin(torch.tensor(logits), torch.tensor(labels)).item(), rtol=1e-5)
    target = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    mse = torch_twin.twin(nn.MSELoss(reduction="none"))
    np.testing.assert_allclose(nn.MSELoss(reduction="none")(mg.tensor(logits), mg.tensor(target)).numpy(),
                               mse(torch.tensor(logits), torch.tensor(target)).numpy(), rtol=1e-6)


def test_the_twin_keeps_float64_frozen_parameters_and_a_layer_used_twice():
    mg.manual_seed(0)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2)).double()
    model[3].bias.requires_grad = False
    twin = torch_twin.twin(model)
    assert twin[0] is twin[2] and twin[0].weight.dtype == torch.float64
    assert not twin[3].bias.requires_grad and twin[3].weight.requires_grad
    x = np.random.default_rng(0).standard_normal((3, 4))
    out, twin_out = run_both(model, twin, x, labels=np.array([0, 1, 1]))
    np.testing.assert_allclose(out, twin_out, rtol=1e-12)
    assert_same_grads(model, twin, rtol=1e-10, atol=1e-12)  # the shared layer's gradient sums both uses


def test_sync_batch_norm_becomes_torchs_and_equals_batch_norm_without_a_process_group():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.SyncBatchNorm(3, eps=1e-3))
    twin = torch_twin.twin(model)
    assert isinstance(twin[1], torch.nn.SyncBatchNorm) and twin[1].eps == 1e-3
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    out, twin_out = run_both(model, twin, x)
    np.testing.assert_allclose(out, twin_out, rtol=1e-4, atol=1e-5)
    assert_same_state(model, twin, rtol=1e-5, atol=1e-6)


def test_a_gpu_model_is_copied_to_a_cpu_twin(standin):
    model, shape = seed_model("mlp_bn")
    cpu_twin = torch_twin.twin(model)
    model.to("cuda")
    twin = torch_twin.twin(model)
    assert_same_state(model.cpu(), twin, rtol=0, atol=0)
    assert all(parameter.device.type == "cpu" for parameter in twin.parameters())
    assert list(cpu_twin.state_dict()) == list(twin.state_dict())


class Scale(nn.Module):
    def forward(self, x):
        return 2 * x


class TwiceLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def test_a_layer_without_a_twin_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"to_torch: no PyTorch twin for Scale \(layer 'block\.1'\);"
                                        r" it converts these minigrad\.nn layers .*Conv2d"):
        torch_twin.to_torch(nn.Sequential(OrderedDict([("stem", nn.Linear(2, 2)),
                                                       ("block", nn.Sequential(nn.ReLU(), Scale()))])))
    with pytest.raises(TypeError, match=r"no PyTorch twin for TwiceLinear;.*\(exactly, not subclasses\)"):
        torch_twin.twin(TwiceLinear(2, 3))


def test_copy_weights_into_a_different_network_names_the_keys():
    with pytest.raises(ValueError, match=r"copy_weights: the state_dict keys of Sequential and Sequential differ: "
                                         r"only in torch: \['1.weight', '1.bias'\], only in minigrad: \[\]"):
        torch_twin.copy_weights(nn.Sequential(nn.Linear(2, 2)),
                                torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)))


def test_models_import_without_torch(tmp_path):
    """``import models`` and ``models.torch_twin`` need no torch; only calling the converter does."""
    import os
    import subprocess
    import sys
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    code = ("import models, models.torch_twin\n"
            "try:\n    models.torch_twin.twin(models.build('mlp_bn'))\n"
            "except ImportError as error:\n    print('ImportError', error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ImportError hidden by the test"
