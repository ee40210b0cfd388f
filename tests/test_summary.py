"""summary: Keras' table, with parameter counts worked out by hand, and a model left as it was."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.utils import summary
from models import MODELS, build


def conv(in_channels, out_channels, kernel):
    return in_channels * kernel * kernel * out_channels + out_channels  # weights + one bias per filter


def linear(in_features, out_features):
    return in_features * out_features + out_features


def batch_norm(channels, gamma=True):
    """(trainable, non-trainable): gamma and beta; running mean and variance (Keras' moving averages)."""
    return (2 if gamma else 1) * channels, 2 * channels


def totals(layers, batch_norms):
    """(total, trainable, non-trainable) from the trainable counts of the layers and the BNs' pairs."""
    trainable = sum(layers) + sum(t for t, _ in batch_norms)
    non_trainable = sum(n for _, n in batch_norms)
    return trainable + non_trainable, trainable, non_trainable


# Each seed model at its default size, counted by hand. conv(1, 32, 5) = 1*5*5*32 + 32 = 832.
EXPECTED = {
    "mnist_bn": ((1, 28, 28), totals([conv(1, 32, 5), conv(32, 64, 5), linear(64 * 7 * 7, 1024), linear(1024, 10)],
                                     [batch_norm(32), batch_norm(64)])),
    # TF contrib batch_norm has no gamma (scale=False): beta, mean and variance, 3 per channel.
    "cifar_bn": ((3, 32, 32), totals([conv(3, 64, 3), conv(64, 64, 3), conv(64, 32, 3), conv(32, 16, 3),
                                      conv(16, 10, 3)],
                                     [batch_norm(c, gamma=False) for c in (64, 64, 32, 16, 10)])),
    "catsdogs_logreg": ((3, 224, 224), totals([linear(3 * 224 * 224, 2)], [batch_norm(3)])),
    # conv 2x2 valid: 224 -> 223, max-pool 16: 223 -> 13.
    "catsdogs_wide": ((3, 224, 224), totals([conv(3, 100, 2), linear(100 * 13 * 13, 2)], [batch_norm(3)])),
    # seven conv 2x2 SAME + pool 2: 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 3 -> 1.
    "catsdogs_deep": ((3, 224, 224), totals([conv(3, 20, 2)] + [conv(20, 20, 2)] * 6 + [linear(20, 2)],
                                           [batch_norm(3)])),
    "mlp_bn": ((20,), totals([linear(20, 50), linear(50, 10)], [batch_norm(50)])),
}


def test_every_seed_model_is_counted_by_hand():
    assert set(EXPECTED) == set(MODELS)
    assert EXPECTED["mnist_bn"][1] == (3_275_018, 3_274_826, 192)
    assert EXPECTED["catsdogs_wide"][1] == (35_114, 35_108, 6)
    for name, (input_shape, (total, trainable, non_trainable)) in EXPECTED.items():
        result = summary(build(name), input_shape, print_fn=None)
        assert (result.total, result.trainable, result.non_trainable) == (total, trainable, non_trainable), name
        assert sum(layer.params for layer in result.layers) == total, name
        assert f"Total params: {total:,} (" in result.text
        assert f"Trainable params: {trainable:,} (" in result.text
        assert f"Non-trainable params: {non_trainable:,} (" in result.text


def test_mnist_bn_table_lists_every_layer_with_its_output_shape():
    result = summary(build("mnist_bn"), (1, 28, 28), print_fn=None)
    rows = [(layer.name, layer.type, layer.output_shape, layer.params) for layer in result.layers]
    assert rows == [
        ("0", "Conv2d", "(None, 32, 28, 28)", 832),
        ("1", "BatchNorm2d", "(None, 32, 28, 28)", 4 * 32),
        ("2", "ReLU", "(None, 32, 28, 28)", 0),
        ("3", "MaxPool2d", "(None, 32, 14, 14)", 0),
        ("4", "Conv2d", "(None, 64, 14, 14)", 32 * 5 * 5 * 64 + 64),
        ("5", "BatchNorm2d", "(None, 64, 14, 14)", 4 * 64),
        ("6", "ReLU", "(None, 64, 14, 14)", 0),
        ("7", "MaxPool2d", "(None, 64, 7, 7)", 0),
        ("8", "Flatten", "(None, 3136)", 0),
        ("9", "Linear", "(None, 1024)", 3136 * 1024 + 1024),
        ("10", "ReLU", "(None, 1024)", 0),
        ("11", "Dropout", "(None, 1024)", 0),
        ("12", "Linear", "(None, 10)", 1024 * 10 + 10),
    ]
    lines = result.text.splitlines()
    assert lines[0] == 'Model: "Sequential"'
    assert lines[2].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#"]
    assert lines[4].split() == ["0", "(Conv2d)", "(None,", "32,", "28,", "28)", "832"]
    assert "9 (Linear)" in lines[13] and lines[13].endswith("3,212,288")
    assert str(result) == result.text and "total=3275018" in repr(result)


def test_it_prints_unless_told_not_to_and_shows_a_given_batch_size(capsys):
    model = build("mlp_bn")
    result = summary(model, (20,))
    assert capsys.readouterr().out == result.text + "\n"
    summary(model, (20,), print_fn=None)
    assert capsys.readouterr().out == ""
    printed = []
    result = summary(model, (20,), batch_size=32, print_fn=printed.append)
    assert printed == [result.text] and [layer.output_shape for layer in result.layers] == [
        "(32, 50)", "(32, 50)", "(32, 50)", "(32, 10)"]


@pytest.mark.parametrize("training", [True, False])
def test_the_model_is_left_as_it_was(training):
    mg.manual_seed(0)
    model = build("mnist_bn")
    model(mg.randn(4, 1, 28, 28))  # a training step's forward: the running averages move away from 0 and 1
    model.train(training)
    model[11].eval()  # a mixed state too: the Dropout alone in eval
    modes = [module.training for module in model.modules()]
    state = {key: value.numpy().copy() for key, value in model.state_dict().items()}
    summary(model, (1, 28, 28), print_fn=None)
    assert [module.training for module in model.modules()] == modes
    for key, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), state[key]), key  # running stats and num_batches_tracked
    assert all("forward" not in module.__dict__ for module in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_a_failing_run_also_leaves_the_model_as_it_was():
    model = build("mnist_bn")
    with pytest.raises(ValueError, match="input has 3 channels"):
        summary(model, (3, 28, 28), print_fn=None)  # 3 channels for a 1-channel network
    assert model.training and all(module.training for module in model.modules())
    assert all("forward" not in module.__dict__ for module in model.modules())


def test_models_without_batch_norm_have_no_non_trainable_params():
    for name, input_shape, options in [("mnist_bn", (1, 28, 28), {}), ("mlp_bn", (20,), {}),
                                       ("catsdogs_wide", (3, 64, 64), {"image_size": 64})]:
        result = summary(build(name, batch_norm=False, **options), input_shape, print_fn=None)
        assert result.non_trainable == 0 and result.total == result.trainable, name
    # catsdogs_wide at 64 pixels: conv 2x2 64 -> 63, pool 16 -> 3.
    assert result.total == conv(3, 100, 2) + linear(100 * 3 * 3, 2)


def test_frozen_parameters_are_non_trainable():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad = False
    result = summary(model, (4,), print_fn=None)
    assert (result.total, result.trainable, result.non_trainable) == (15 + 8, 3 + 8, 12)


def test_nested_modules_list_their_layers_in_call_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 2)  # registered first, called last
            self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
            self.scale = nn.Parameter(mg.ones(2))  # a weight of the network itself

        def forward(self, x):
            return self.head(self.body(x)) * self.scale

    model = Net()
    result = summary(model, (4,), print_fn=None)
    assert [(layer.name, layer.type, layer.output_shape) for layer in result.layers] == [
        ("Net", "Net", "(None, 2)"), ("body.0", "Linear", "(None, 8)"), ("body.1", "BatchNorm1d", "(None, 8)"),
        ("body.2", "ReLU", "(None, 8)"), ("head", "Linear", "(None, 2)")]
    assert [layer.params for layer in result.layers] == [2, 4 * 8 + 8, 4 * 8, 0, 8 * 2 + 2]
    assert (result.total, result.non_trainable) == (2 + 40 + 32 + 18, 16)
    assert "forward" not in model.__dict__ and model(mg.ones(3, 4)).shape == (3, 2)
