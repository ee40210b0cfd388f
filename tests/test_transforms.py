"""mg.data.transforms: batch transforms with torchvision's names, seeded so a resumed run replays them."""
import numpy as np
import pytest

from minigrad.data import transforms


def images(n=6, c=2, h=5, w=7):
    return np.random.default_rng(0).random((n, c, h, w)).astype(np.float32)


def test_random_crop_shifts_each_image_within_the_padding_with_zeros_filling_in():
    x = images()
    out = transforms.RandomCrop(2, generator=np.random.default_rng(1))(x)
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for k in range(len(x)):  # each output image is some 5x7 window of its padded image
        assert any(np.array_equal(out[k], padded[k, :, dy:dy + 5, dx:dx + 7]) for dy in range(5) for dx in range(5))
    assert np.array_equal(transforms.RandomCrop(0)(x), x)


def test_flip_mirrors_about_half_and_replays_from_its_generator_state():
    x = images(n=400)
    flip = transforms.RandomHorizontalFlip(generator=np.random.default_rng(2))
    state = flip.generator.bit_generator.state
    out = flip(x)
    mirrored = np.array([np.array_equal(o, i[..., ::-1]) and not np.array_equal(o, i) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert (mirrored | kept).all() and 0.4 < mirrored.mean() < 0.6
    flip.generator.bit_generator.state = state
    assert np.array_equal(flip(x), out)
    assert np.array_equal(transforms.RandomHorizontalFlip(p=0)(x), x)


def test_normalize_fit_and_compose():
    x = images(n=50) * 3 + 1
    normalize = transforms.Normalize.fit(x)
    out = transforms.Compose([normalize])(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    flat = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    np.testing.assert_allclose(transforms.Normalize([1, 2, 3], [2, 2, 2])(flat), (flat - [1, 2, 3]) / 2, rtol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="RandomCrop: padding"):
        transforms.RandomCrop(-1)
    with pytest.raises(ValueError, match="RandomHorizontalFlip: p"):
        transforms.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="Normalize: std"):
        transforms.Normalize([0.0], [0.0])
