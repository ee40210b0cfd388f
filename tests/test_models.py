"""The seed networks run, learn, and the seed-003 hand-written BatchNorm equals batch_norm."""
import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from models import DEFAULTS, build
from oracle import randn


def test_mnist_bn_forward_and_backward_on_a_batch():
    mg.manual_seed(0)
    model = build("mnist_bn")
    x = mg.randn(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 10) and logits.dtype == mg.float32
    loss = F.cross_entropy(logits, mg.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.isfinite(p.grad.numpy()).all(), name
    assert sum(p.numel() for p in model.parameters()) == 3_274_634 + 2 * (32 + 64)


def test_mnist_bn_structure_follows_the_seed():
    model = build("mnist_bn")
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [bn.num_features for bn in batch_norms] == [32, 64]
    assert all(bn.eps == 1e-3 and bn.momentum == 0.1 for bn in batch_norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build("mnist_bn", batch_norm=False).modules())
    assert DEFAULTS["mnist_bn"]["lr"] == 5e-4 and DEFAULTS["mnist_bn"]["batch_size"] == 64


def test_seed_init_is_truncated_normal_and_biases_are_001():
    mg.manual_seed(1)
    model = build("mnist_bn")
    weights = model[-4].weight.numpy()  # Linear 3136 -> 1024
    assert np.abs(weights).max() <= 0.02 and 0.007 < weights.std() < 0.0095
    assert np.all(model[-4].bias.numpy() == np.float32(0.01))
    with pytest.raises(ValueError, match="init must be"):
        build("mnist_bn", init="glorot")


def test_mnist_bn_learns_a_small_synthetic_problem():
    """A few hundred Adam steps drive the training loss on 10 patterned classes near zero."""
    mg.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    patterns = rng.standard_normal((10, 1, 28, 28)).astype(np.float32)
    images = patterns[labels] + 1.5 * rng.standard_normal((40, 1, 28, 28)).astype(np.float32)
    x, y = mg.tensor(images), mg.tensor(labels)
    model = build("mnist_bn")
    optimizer = mg.optim.Adam(model.parameters(), lr=5e-4)
    losses = []
    for step in range(200):
        index = rng.permutation(40)[:16]
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[:5]) > 1.5
    assert np.mean(losses[-10:]) < 0.05
    model.eval()
    with mg.no_grad():
        assert (model(x).argmax(axis=1).numpy() == labels).mean() == 1.0


def _seed_003_batch_norm(x, gamma, beta):
    """Seed 003's BatchNorm by hand: tf.nn.moments(x, [0]) then tf.nn.batch_normalization(..., 1e-3)."""
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    return (x - mean) / (var + 1e-3).sqrt() * gamma + beta


def test_seed_003_hand_written_batch_norm_equals_batch_norm():
    arrays = [randn(32, 50, seed=20), randn(50, seed=21), randn(50, seed=22)]
    by_hand = [mg.tensor(a, requires_grad=True) for a in arrays]
    fused = [mg.tensor(a, requires_grad=True) for a in arrays]
    running_mean, running_var = mg.zeros(50, dtype=mg.float64), mg.ones(50, dtype=mg.float64)
    out_by_hand = _seed_003_batch_norm(*by_hand)
    out_fused = F.batch_norm(fused[0], running_mean, running_var, fused[1], fused[2], training=True, eps=1e-3)
    np.testing.assert_allclose(out_by_hand.numpy(), out_fused.numpy(), rtol=1e-12, atol=1e-12)
    upstream = randn(32, 50, seed=23)
    out_by_hand.backward(mg.tensor(upstream))
    out_fused.backward(mg.tensor(upstream))
    for mine, theirs in zip(by_hand, fused):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_seed_003_hand_written_batch_norm_passes_gradcheck():
    assert mg.utils.gradcheck(_seed_003_batch_norm,
                              *[mg.tensor(a, requires_grad=True) for a in
                                (randn(6, 4, seed=24), randn(4, seed=25), randn(4, seed=26))])


@pytest.mark.parametrize("name, features", [("catsdogs_logreg", 3 * 224 * 224), ("catsdogs_wide", 100 * 13 * 13),
                                            ("catsdogs_deep", 20)])
def test_catsdogs_models_follow_seed_001(name, features):
    model = build(name)
    first = model[0]
    assert isinstance(first, nn.BatchNorm2d) and first.eps == 1e-3 and first.momentum == 0.01  # Keras' defaults
    head = model[-1]
    assert isinstance(head, nn.Linear) and head.in_features == features and head.out_features == 2
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):  # Keras: glorot-uniform kernels, zero biases
            fan_in = layer.weight.numel() // layer.weight.shape[0]
            fan_out = layer.weight.numel() // layer.weight.shape[1]
            assert np.abs(layer.weight.numpy()).max() <= np.sqrt(6 / (fan_in + fan_out))
            assert not layer.bias.numpy().any()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build(name, batch_norm=False).modules())
    assert DEFAULTS[name]["batch_size"] == 10 and DEFAULTS[name]["image_size"] == 224


def test_catsdogs_models_at_other_image_sizes():
    with mg.no_grad():
        assert build("catsdogs_deep", image_size=128)(mg.zeros(1, 3, 128, 128)).shape == (1, 2)
        assert build("catsdogs_wide", image_size=64)(mg.zeros(1, 3, 64, 64)).shape == (1, 2)
    with pytest.raises(ValueError, match="too small"):
        build("catsdogs_deep", image_size=64)
    with pytest.raises(ValueError, match="at least 17"):
        build("catsdogs_wide", image_size=16)
    with pytest.raises(ValueError, match="init must be"):
        build("catsdogs_wide", init="he")


def test_cifar_bn_follows_seed_000():
    model = build("cifar_bn")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [bn.num_features for bn in norms] == [64, 64, 32, 16, 10]
    assert all(bn.weight is None and bn.bias is not None and bn.eps == 1e-3 and bn.momentum == 0.1 for bn in norms)
    with mg.no_grad():
        assert model.eval()(mg.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="init must be"):
        build("cifar_bn", init="he")
