"""minigrad.nn against torch.nn: the same model written once, built by both, must agree.

Each architecture below is a function of the ``nn`` namespace, so one
definition builds the PyTorch model and ours. Copying the PyTorch model's
state_dict into ours must then give the same outputs, gradients and
BatchNorm running statistics (in float64), the same keys, and the same printout.
"""
import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from oracle import check_op, randn

torch = pytest.importorskip("torch")


# ----- architectures, written once for torch.nn and minigrad.nn ----------------------------
def conv_net(nn):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6, momentum=None), nn.Tanh(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5))


def pooling_net(nn):
    return nn.Sequential(
        nn.Conv2d(1, 3, (3, 2), padding="same"), nn.BatchNorm2d(3, affine=False), nn.Sigmoid(),
        nn.AvgPool2d(2), nn.Conv2d(3, 4, 2, padding="valid"), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def mlp_bn(nn):
    return nn.Sequential(nn.Linear(20, 50), nn.BatchNorm1d(50), nn.ReLU(), nn.Dropout(0.0), nn.Linear(50, 10))


def no_running_stats(nn):
    return nn.Sequential(nn.Linear(6, 4, bias=False), nn.BatchNorm1d(4, eps=1e-3, track_running_stats=False))


def custom(nn):
    """A user's Module with attributes, a nested block and a weight used twice."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)).relu()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.pool = nn.MaxPool2d(2, stride=2)
            self.head = nn.Linear(2 * 4 * 4, 3)
            self.shared = nn.Linear(3, 3)

        def forward(self, x):
            x = self.head(self.pool(self.block(x)).flatten(1))
            return self.shared(self.shared(x))

    return Net()


ARCHITECTURES = {"conv_net": (conv_net, (4, 1, 8, 8)), "pooling_net": (pooling_net, (3, 1, 7, 6)),
                 "mlp_bn": (mlp_bn, (8, 20)), "no_running_stats": (no_running_stats, (5, 6)),
                 "custom": (custom, (2, 1, 8, 8))}


def both(architecture):
    """The torch model and ours, in float64, ours holding a copy of torch's weights."""
    theirs = architecture(torch.nn).double()
    ours = architecture(nn).double()
    ours.load_state_dict({key: value.numpy() for key, value in theirs.state_dict().items()})
    return theirs, ours


def same_objects(these, those):
    """Identity, not equality: Tensor's == compares values elementwise."""
    return [id(t) for t in these] == [id(t) for t in those]


def assert_close(mine, expected, message=""):
    mine = mine.numpy() if isinstance(mine, mg.Tensor) else mine
    np.testing.assert_allclose(mine, expected.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=message)


# ----- against PyTorch --------------------------------------------------------------------
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_state_dict_keys_shapes_and_dtypes_are_pytorchs(name):
    architecture, _ = ARCHITECTURES[name]
    theirs, ours = architecture(torch.nn).state_dict(), architecture(nn).state_dict()
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        assert value.shape == tuple(theirs[key].shape), key
        assert value.dtype == str(theirs[key].dtype).replace("torch.", ""), key


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameters_and_modules_come_in_pytorchs_order(name):
    architecture, _ = ARCHITECTURES[name]
    theirs, ours = architecture(torch.nn), architecture(nn)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_gradients_and_running_stats_equal_pytorchs(name):
    architecture, input_shape = ARCHITECTURES[name]
    theirs, ours = both(architecture)
    for step in range(3):  # training: batch statistics, running averages updated
        x = randn(*input_shape, seed=step)
        mine_x, their_x = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, expected = ours(mine_x), theirs(their_x)
        assert_close(out, expected, "training forward")
        upstream = randn(*out.shape, seed=10 + step)
        (out * mg.tensor(upstream)).sum().backward()
        (expected * torch.tensor(upstream)).sum().backward()
        assert_close(mine_x.grad, their_x.grad, "input gradient")
        for (key, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert_close(p.grad, q.grad, f"gradient of {key}")
        ours.zero_grad()
        theirs.zero_grad()
    expected_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        assert_close(value, expected_state[key], f"state {key} after training")
    ours.eval()
    theirs.eval()
    x = randn(*input_shape, seed=99)
    assert_close(ours(mg.tensor(x)), theirs(torch.tensor(x)), "eval forward")


@pytest.mark.parametrize("layer, momentum", [("BatchNorm1d", 0.1), ("BatchNorm1d", None),
                                             ("BatchNorm2d", 0.3), ("BatchNorm2d", None)])
def test_batch_norm_running_statistics_and_eval_equal_pytorchs(layer, momentum):
    shape = (16, 3) if layer == "BatchNorm1d" else (4, 3, 5, 5)
    theirs = getattr(torch.nn, layer)(3, momentum=momentum).double()
    ours = getattr(nn, layer)(3, momentum=momentum).double()
    for step in range(4):
        x = 2 + 3 * randn(*shape, seed=step)
        assert_close(ours(mg.tensor(x)), theirs(torch.tensor(x)))
    assert_close(ours.running_mean, theirs.running_mean)
    assert_close(ours.running_var, theirs.running_var)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 4
    assert ours.num_batches_tracked.dtype == mg.int64
    x = randn(*shape, seed=7)
    assert_close(ours.eval()(mg.tensor(x)), theirs.eval()(torch.tensor(x)))
    assert ours.num_batches_tracked.item() == 4  # eval leaves the statistics alone


def test_batch_norm_without_running_stats_always_uses_the_batch():
    layer = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert layer.running_mean is None and layer.num_batches_tracked is None
    assert list(layer.state_dict()) == []
    x = randn(10, 3)
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    for mode in (True, False):
        np.testing.assert_allclose(layer.train(mode)(mg.tensor(x)).numpy(), expected, rtol=1e-10)


def test_batch_norm_with_tracking_switched_off_later_keeps_its_buffers_frozen():
    theirs, ours = torch.nn.BatchNorm1d(3).double(), nn.BatchNorm1d(3).double()
    for layer in (theirs, ours):
        layer.running_mean.data[:] = 1.0
        layer.track_running_stats = False
    for mode in (True, False):  # training: batch statistics; eval: the frozen running ones
        x = randn(6, 3, seed=int(mode))
        assert_close(ours.train(mode)(mg.tensor(x)), theirs.train(mode)(torch.tensor(x)))
    assert (ours.running_mean.numpy() == 1).all() and ours.num_batches_tracked.item() == 0


def test_repr_is_pytorchs():
    def everything(nn):
        return nn.Sequential(conv_net(nn), custom(nn), nn.Linear(3, 2, bias=False), nn.Dropout(0.25),
                             nn.BatchNorm1d(2, eps=1e-3, momentum=None, affine=False),
                             nn.AvgPool2d((2, 3), stride=1, padding=1), nn.AdaptiveAvgPool2d(1),
                             nn.Conv2d(2, 3, 2, padding="same"), nn.CrossEntropyLoss(), nn.MSELoss())

    expected = str(everything(torch.nn))
    # PyTorch 2.13 added BatchNorm's keyword-only ``bias`` argument to its printout.
    expected = re.sub(r", bias=\w+, track_running_stats", ", track_running_stats", expected)
    assert repr(everything(nn)) == expected
    assert str(nn.Softmax(axis=1)) == "Softmax(axis=1)"
    assert repr(nn.Parameter(mg.tensor([1.0, 2.0]))) == repr(torch.nn.Parameter(torch.tensor([1.0, 2.0])))


@pytest.mark.parametrize("mg_fn, torch_fn, shapes", [
    (lambda x, w, b: F.linear(x, w, b), torch.nn.functional.linear, [(4, 3), (2, 3), (2,)]),
    (lambda x, w: F.linear(x, w), torch.nn.functional.linear, [(4, 3), (2, 3)]),
    (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
     lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=2, padding=1), [(2, 3, 6, 6), (4, 3, 3, 3), (4,)]),
    (lambda x, w: F.conv2d(x, w, padding="same"),
     lambda x, w: torch.nn.functional.conv2d(x, w, padding="same"), [(2, 3, 5, 5), (4, 3, 3, 3)]),
    (lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
     lambda x: torch.nn.functional.max_pool2d(x, 3, stride=2, padding=1), [(2, 3, 7, 7)]),
    (lambda x: F.avg_pool2d(x, 2), lambda x: torch.nn.functional.avg_pool2d(x, 2), [(2, 3, 6, 6)]),
    (lambda x: F.adaptive_avg_pool2d(x, 1),
     lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1), [(2, 3, 4, 5)]),
    (F.relu, torch.relu, [(3, 4)]),
    (F.sigmoid, torch.sigmoid, [(3, 4)]),
    (F.tanh, torch.tanh, [(3, 4)]),
    (lambda x: F.softmax(x, axis=0), lambda x: torch.softmax(x, dim=0), [(3, 4)]),
    (F.log_softmax, lambda x: torch.log_softmax(x, dim=-1), [(3, 4)]),
    (lambda x, t: F.mse_loss(x, t, reduction="sum"),
     lambda x, t: torch.nn.functional.mse_loss(x, t, reduction="sum"), [(3, 4), (3, 4)]),
    (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, eps=1e-3),
     lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-3),
     [(4, 3, 2, 2), (3,), (3,)]),
], ids=["linear", "linear_no_bias", "conv2d", "conv2d_same", "max_pool2d", "avg_pool2d",
        "adaptive_avg_pool2d", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "mse_loss", "batch_norm"])
def test_functional_matches_torch(mg_fn, torch_fn, shapes):
    check_op(mg_fn, torch_fn, *[randn(*shape, seed=i) for i, shape in enumerate(shapes)])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_takes_indices_one_hot_and_numpy_targets(reduction):
    logits, labels = randn(5, 4), np.array([0, 3, 1, 1, 2])
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), reduction=reduction)
    for target in (labels, mg.tensor(labels), np.eye(4)[labels], mg.tensor(np.eye(4)[labels])):
        assert_close(F.cross_entropy(mg.tensor(logits), target, reduction=reduction), expected)
        assert_close(nn.CrossEntropyLoss(reduction=reduction)(mg.tensor(logits), target), expected)


def test_functional_batch_norm_updates_running_tensors_in_place():
    x = randn(6, 3)
    running_mean, running_var = mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64)
    their_mean, their_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    out = F.batch_norm(mg.tensor(x), running_mean, running_var, training=True, momentum=0.2)
    expected = torch.nn.functional.batch_norm(torch.tensor(x), their_mean, their_var, training=True, momentum=0.2)
    assert_close(out, expected)
    assert_close(running_mean, their_mean)
    assert_close(running_var, their_var)


# ----- state_dict and load_state_dict ---------------------------------------------------------
def test_state_dict_shares_data_and_is_detached():
    model = mlp_bn(nn)
    state = model.state_dict()
    assert state["0.weight"].data is model[0].weight.data
    assert not state["0.weight"].requires_grad and not isinstance(state["0.weight"], nn.Parameter)
    assert state["1.num_batches_tracked"].data is model[1].num_batches_tracked.data


def test_state_dict_round_trip_through_a_file(tmp_path):
    mg.manual_seed(0)
    model = conv_net(nn)
    model(mg.randn(4, 1, 8, 8))  # move the running statistics away from their start
    mg.save(model.state_dict(), tmp_path / "model.ckpt")
    mg.manual_seed(1)
    restored = conv_net(nn)
    parameters = list(restored.parameters())
    restored.load_state_dict(mg.load(tmp_path / "model.ckpt"))
    assert same_objects(restored.parameters(), parameters)  # new values in the same Parameters
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key].numpy(), value.numpy())
    assert restored[1].num_batches_tracked.item() == 1
    x = mg.randn(2, 1, 8, 8)
    np.testing.assert_array_equal(restored.eval()(x).numpy(), model.eval()(x).numpy())


def test_load_state_dict_casts_into_the_existing_arrays():
    model = mlp_bn(nn)
    weight = model[0].weight.data
    model.load_state_dict({key: value.numpy().astype(np.float64) if key != "1.num_batches_tracked" else 5
                           for key, value in mlp_bn(nn).state_dict().items()})
    assert model[0].weight.data is weight and weight.dtype == np.float32
    assert model[1].num_batches_tracked.item() == 5 and model[1].num_batches_tracked.dtype == mg.int64


def test_load_state_dict_strict_lists_missing_and_unexpected_keys_at_once():
    model = mlp_bn(nn)
    state = model.state_dict()
    del state["0.bias"], state["1.running_var"]
    state["2.weight"] = mg.ones(3)
    before = model[0].weight.numpy().copy()
    state["0.weight"] = mg.zeros(50, 20)
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert 'Missing key(s) in state_dict: "0.bias", "1.running_var".' in message
    assert 'Unexpected key(s) in state_dict: "2.weight".' in message
    np.testing.assert_array_equal(model[0].weight.numpy(), before)  # a failed load changes nothing

    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["0.bias", "1.running_var"]
    assert result.unexpected_keys == ["2.weight"]
    assert (model[0].weight.numpy() == 0).all()


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_shape_mismatch_names_the_key_and_both_shapes(strict):
    model = mlp_bn(nn)
    state = model.state_dict()
    state["4.weight"] = mg.zeros(10, 49)
    with pytest.raises(ValueError, match=r"size mismatch for 4\.weight: .*shape \(10, 49\).*\(10, 50\)"):
        model.load_state_dict(state, strict=strict)


def snapshot(model):
    return {key: tensor.numpy().copy() for key, tensor in model.state_dict().items()}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert list(after) == list(before)
    for key in before:
        assert after[key].dtype == before[key].dtype, key
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("bad, message", [
    (mg.zeros(7), r"size mismatch for 1\.running_var: .*shape \(7,\)"),
    ("abc", r'named "1\.running_var", expected a Tensor or an array of numbers .* received str'),
    (object(), r'named "1\.running_var", .* received object'),
    ([[1.0], [1.0, 2.0]], r'named "1\.running_var", .* received list'),
    (np.array(["a", "b", "c", "d", "e"]), r'named "1\.running_var", .* received ndarray of dtype <U1'),
    (np.ones(5, dtype=complex), r'named "1\.running_var", .* received ndarray of dtype complex128'),
])
def test_a_failed_load_changes_no_parameter_or_buffer(bad, message):
    """All or nothing: the good values before the bad one (in key order) are not copied either."""
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    before = snapshot(model)
    state = {key: value + 1 for key, value in snapshot(model).items()}  # new values for every key
    state["1.running_var"] = bad
    with pytest.raises(nn.module.StateDictError, match=message) as error:
        model.load_state_dict(state)
    assert isinstance(error.value, RuntimeError) and isinstance(error.value, ValueError)
    assert_unchanged(model, before)
    state["1.running_var"] = before["1.running_var"] + 1
    model.load_state_dict(state)  # the same state, repaired, loads
    np.testing.assert_array_equal(model[0].weight.numpy(), before["0.weight"] + 1)


def test_floats_into_an_integer_buffer_are_refused_naming_it():
    model = mlp_bn(nn)
    before = snapshot(model)
    state = {key: value * 2 for key, value in snapshot(model).items()}
    state["1.num_batches_tracked"] = np.float64(2.5)
    with pytest.raises(ValueError, match=r'named "1\.num_batches_tracked", .*floating-point values \(float64\) '
                                         r"but the tensor in current model is int64"):
        model.load_state_dict(state)
    assert_unchanged(model, before)
    state["1.num_batches_tracked"] = True  # bools and integers are numbers an integer buffer takes
    model.load_state_dict(state)
    assert model[1].num_batches_tracked.item() == 1


def test_a_conversion_failing_midway_changes_nothing(monkeypatch):
    """The casts and device copies all happen before the first value is written."""
    model = mlp_bn(nn)
    before = snapshot(model)
    state = {key: value + 1 for key, value in snapshot(model).items()}
    calls = []

    def to_device(array, device):
        calls.append(device)
        if len(calls) == 3:
            raise MemoryError("out of memory on the device")
        return array
    monkeypatch.setattr(mg.backend, "to_device", to_device)
    with pytest.raises(MemoryError):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_load_state_dict_of_a_module_instead_of_its_state_dict():
    model = mlp_bn(nn)
    with pytest.raises(TypeError, match=r"Sequential\.load_state_dict: expected a dict .* got Sequential; "
                                        r"pass module\.state_dict\(\)"):
        model.load_state_dict(mlp_bn(nn))
    with pytest.raises(TypeError, match="got list"):
        model.load_state_dict([("0.weight", mg.zeros(50, 20))])


# ----- modes, devices, dtypes, gradients ------------------------------------------------------
def test_train_and_eval_reach_every_submodule_and_return_self():
    model = custom(nn)
    assert model.eval() is model
    assert all(not module.training for module in model.modules())
    assert model.train() is model
    assert all(module.training for module in model.modules())
    model.block.train(False)
    assert model.training and not model.block.bn.training


def test_dropout_is_the_identity_in_eval_and_inverted_in_training():
    x = mg.ones(200, 50)
    layer = nn.Dropout(0.25)
    assert layer.eval()(x) is x
    assert F.dropout(x, 0.5, training=False) is x and F.dropout(x, 0.0) is x
    values = layer.train()(x).numpy()
    assert set(np.unique(values)) == {0.0, np.float32(1 / 0.75)}
    assert abs((values == 0).mean() - 0.25) < 0.02


@pytest.mark.parametrize("cast", [lambda m: m.double(), lambda m: m.to(dtype=mg.float64),
                                  lambda m: m.to(mg.float64), lambda m: m.to("cpu", "float64")])
def test_dtype_casts_keep_parameters_and_integer_buffers(cast):
    model = conv_net(nn)
    model(mg.randn(4, 1, 8, 8)).sum().backward()
    parameters = list(model.parameters())
    optimizer = mg.optim.SGD(model.parameters(), lr=0.1)
    assert cast(model) is model
    assert same_objects(model.parameters(), parameters)
    assert all(p.dtype == mg.float64 and p.grad.dtype == mg.float64 for p in parameters)
    assert model[1].running_mean.dtype == mg.float64
    assert model[1].num_batches_tracked.dtype == mg.int64
    before = parameters[0].numpy().copy()
    optimizer.step()  # the optimizer built before the cast still updates the model
    assert not np.array_equal(parameters[0].numpy(), before)
    model.float()
    assert all(p.dtype == mg.float32 for p in model.parameters())
    assert model[1].num_batches_tracked.dtype == mg.int64
    with pytest.raises(TypeError, match="floating"):
        model.to(dtype=mg.int64)


def test_zero_grad_sets_gradients_to_none_or_zero():
    model = mlp_bn(nn)
    model(mg.randn(4, 20)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all((p.grad.numpy() == 0).all() and p.grad.shape == p.shape for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ----- Module bookkeeping ----------------------------------------------------------------------
def test_registration_by_assignment():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(mg.ones(3))
            self.layer = nn.Linear(3, 3)
            self.register_buffer("steps", mg.tensor(0))
            self.note = "plain attribute"

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "layer.weight", "layer.bias"]
    assert [n for n, _ in net.named_buffers()] == ["steps"] and list(net.buffers())[0] is net.steps
    assert list(net.children()) == [net.layer]
    net.layer.bias = None  # a registered name may be emptied
    assert list(net.state_dict()) == ["scale", "steps", "layer.weight"]  # own tensors, then children's
    with pytest.raises(TypeError, match="parameter 'scale'"):
        net.scale = mg.ones(3)
    with pytest.raises(TypeError, match="buffer 'steps'"):
        net.steps = 3
    del net.layer
    assert list(net.children()) == [] and not hasattr(net, "layer")
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'missing'"):
        net.missing


def test_forgetting_super_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_parameter_wraps_without_copying():
    array = np.ones(3, dtype=np.float32)
    assert nn.Parameter(array).data is array and nn.Parameter(array).requires_grad
    t = mg.zeros(2)
    assert nn.Parameter(t).data is t.data
    assert not nn.Parameter(t, requires_grad=False).requires_grad


def test_sequential_indexing_slicing_and_iteration():
    layers = [nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[2]
    head = model[1:]
    assert isinstance(head, nn.Sequential) and list(head) == layers[1:]
    assert list(head.state_dict()) == ["2.weight", "2.bias"]  # names kept, as in PyTorch
    with pytest.raises(IndexError, match="out of range"):
        model[3]
    x = mg.randn(5, 4)
    np.testing.assert_array_equal(model(x).numpy(), layers[2](layers[1](layers[0](x))).numpy())


def test_apply_visits_every_module():
    model = custom(nn)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
    seen = []
    assert model.apply(seen.append) is model
    assert len(seen) == len(list(model.modules())) and seen[-1] is model


# ----- errors that name the layer and the shapes ----------------------------------------------------
@pytest.mark.parametrize("layer, shape, error, message", [
    (nn.Linear(20, 50), (32, 30), ValueError,
     r"Linear\(in_features=20, out_features=50, bias=True\): input has 30 features \(input shape \(32, 30\)\)"),
    (nn.Conv2d(1, 32, 5, padding=2), (8, 3, 28, 28), ValueError,
     r"Conv2d\(1, 32, kernel_size=\(5, 5\).*\): input has 3 channels \(input shape \(8, 3, 28, 28\)\)"),
    (nn.BatchNorm2d(32), (8, 32), ValueError, r"BatchNorm2d: expected 4-D input \(N, C, H, W\), got shape \(8, 32\)"),
    (nn.BatchNorm2d(32), (8, 3, 4, 4), ValueError, r"BatchNorm2d\(32\): input has 3 channels"),
    (nn.BatchNorm1d(50), (8, 50, 3), ValueError, r"BatchNorm1d: expected 2-D input \(N, C\), got shape \(8, 50, 3\)"),
    (nn.BatchNorm1d(50), (8, 20), ValueError, r"BatchNorm1d\(50\): input has 20 features"),
])
def test_layer_input_errors_name_the_layer_and_shape(layer, shape, error, message):
    with pytest.raises(error, match=message):
        layer(mg.zeros(*shape))


@pytest.mark.parametrize("p", [1.5, -0.1, float("nan"), "0.5", True])
def test_dropout_rejects_a_probability_outside_0_1(p):
    """One check, one message, for the layer, the function (in eval mode too) and the node."""
    with pytest.raises(ValueError, match=r"Dropout: p is the probability of zeroing an element and must be in \[0, 1\]"):
        nn.Dropout(p)
    with pytest.raises(ValueError, match=r"^dropout: p is the probability of zeroing an element"):
        F.dropout(mg.zeros(2), p, training=False)


# ----- on a GPU ------------------------------------------------------------------------------------
def cuda_available():
    try:
        mg.backend.array_module("cuda")
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a GPU")
def test_a_model_moved_to_cuda_computes_what_it_computes_on_the_cpu():
    cpu = conv_net(nn).double()
    gpu = conv_net(nn).double()
    gpu.load_state_dict(cpu.state_dict())
    parameters = list(gpu.parameters())
    assert gpu.to("cuda") is gpu and same_objects(gpu.parameters(), parameters)
    assert all(t.device == "cuda:0" for t in gpu.state_dict().values())
    assert gpu[1].num_batches_tracked.dtype == mg.int64
    x = randn(4, 1, 8, 8)
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        model(mg.tensor(x, device=device)).sum().backward()
    for (key, p), q in zip(gpu.named_parameters(), cpu.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    for key, value in cpu.state_dict().items():
        np.testing.assert_allclose(gpu.state_dict()[key].numpy(), value.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    gpu.load_state_dict(cpu.state_dict())  # CPU arrays copied into the GPU's
    assert gpu[0].weight.device == "cuda:0"
    nn.init.trunc_normal_(gpu[0].weight, std=0.1, a=-0.2, b=0.2)
    assert gpu[0].weight.device == "cuda:0" and np.abs(gpu[0].weight.numpy()).max() <= 0.2
    gpu.cpu()
    assert all(t.device == "cpu" for t in gpu.state_dict().values())
    assert gpu[0].weight.grad.device == "cpu"
