"""Per-image normalisation, grey input and the intensity augmentations (GIN, RandConv, location-scale):
their shapes, ranges, seeding and identities, and that a checkpoint carries the normalisation."""

import numpy as np
import pytest
import torch

from resnet_scratch.data import intensity as aug
from resnet_scratch.data import transforms as T

from conftest import smooth_image


def batch(n: int = 8, size: int = 24, seed: int = 0) -> torch.Tensor:
    """n smooth grey images in 0..255 floats, each with its own brightness."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.stack(
        [torch.from_numpy(np.array(smooth_image(seed + i, (size, size), "L"))).float() for i in range(n)]
    )
    gain = 0.3 + torch.rand(n, generator=g)
    return (grey[:, None] * gain.view(n, 1, 1, 1)).expand(n, 3, size, size).contiguous()


def test_standardize_gives_every_image_mean_0_and_std_1() -> None:
    out = T.standardize(batch())
    assert torch.allclose(out.mean(dim=(1, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(out.std(dim=(1, 2, 3), correction=0), torch.ones(8), atol=1e-4)


def test_standardize_keeps_a_flat_image_finite() -> None:
    assert torch.isfinite(T.standardize(torch.full((2, 3, 8, 8), 7.0))).all()


def test_per_image_normalisations_ignore_gain_and_offset() -> None:
    """What a scanner's gain and offset do to a slice cannot reach the network."""
    x = batch()
    for normalize in ("image", "equalize"):
        a = T.finish(x, torch.float32, T.IMAGENET_MEAN, T.IMAGENET_STD, normalize)
        b = T.finish(0.5 * x + 20, torch.float32, T.IMAGENET_MEAN, T.IMAGENET_STD, normalize)
        assert torch.allclose(a, b, atol=1e-4), normalize
        assert a.is_contiguous(memory_format=torch.channels_last)
    fixed = T.finish(x, torch.float32, T.IMAGENET_MEAN, T.IMAGENET_STD, "fixed")
    assert not torch.allclose(fixed, T.finish(0.5 * x + 20, torch.float32, T.IMAGENET_MEAN, T.IMAGENET_STD, "fixed"))


def test_equalize_keeps_order_and_black_and_flattens_the_histogram() -> None:
    x = batch(n=4, size=64)
    x[:, :, :16] = 0  # a black background
    out = T.equalize(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255 + 1e-3
    for i in range(4):
        a, b = x[i, 0].flatten(), out[i, 0].flatten()
        order = a.argsort()
        assert (b[order].diff() >= -1e-4).all()  # monotone: brighter stays brighter
        assert b[a == 0].max() == 0  # the darkest level maps to 0
        tissue = b[a > 0]
        assert abs(tissue.mean().item() - 255 / 2) < 20  # spread over the range, not bunched


def test_grey_averages_the_channels() -> None:
    x = torch.rand(2, 3, 5, 5) * 255
    out = T.to_grey(x)
    assert torch.allclose(out[:, 0], x.mean(1)) and torch.equal(out[:, 0], out[:, 2])


def test_unknown_normalisation_is_refused() -> None:
    with pytest.raises(ValueError, match="normalize = 'zscore'"):
        T.finish(batch(), torch.float32, T.IMAGENET_MEAN, T.IMAGENET_STD, "zscore")


AUGMENTS = [aug.gin, aug.randconv, aug.location_scale]


@pytest.mark.parametrize("augment", AUGMENTS)
def test_intensity_augments_are_seeded_and_keep_shape_and_dtype(augment: T.Augment) -> None:
    x = batch()
    a = augment(x.clone(), torch.Generator().manual_seed(1), p=1.0)
    b = augment(x.clone(), torch.Generator().manual_seed(1), p=1.0)
    c = augment(x.clone(), torch.Generator().manual_seed(2), p=1.0)
    assert a.shape == x.shape and a.dtype == torch.float32 and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert torch.equal(a[:, 0], a[:, 2])  # one channel, repeated: grey slices stay grey


def test_gin_keeps_each_images_norm() -> None:
    x = batch()
    out = aug.gin(x.clone(), torch.Generator().manual_seed(1), p=1.0)
    assert torch.allclose(out.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-4)


@pytest.mark.parametrize("augment", AUGMENTS)
def test_intensity_augments_change_no_image_at_p_0(augment: T.Augment) -> None:
    x = batch()
    assert torch.equal(augment(x.clone(), torch.Generator().manual_seed(0), p=0.0), x)


def test_no_setting_no_augmentation() -> None:
    """The settings' defaults switch both off: the pipeline then runs none (identity when off)."""
    from resnet_scratch.config import Config
    from resnet_scratch.train import intensity_augments

    assert intensity_augments(Config()) == []
    assert len(intensity_augments(Config(gin=0.5, randconv=0.5, location_scale=0.5))) == 3


@pytest.mark.parametrize("augment", AUGMENTS)
def test_intensity_augments_change_about_p_of_the_images(augment: T.Augment) -> None:
    x = batch(n=200, size=12)
    out = augment(x.clone(), torch.Generator().manual_seed(0), p=0.5)
    changed = (out - x).flatten(1).abs().amax(1) > 1e-3
    assert 70 < changed.sum() < 130


@pytest.mark.parametrize("blend", [0.3, 1.0])
def test_the_blend_weight_is_uniform_up_to_blend(blend: float) -> None:
    """mix with a remapping of zeros leaves (1 - a) x: a can be read back, image by image."""
    x = batch(n=400, size=8) + 1
    out = aug.mix(x, torch.zeros_like(x[:, :1]), 1.0, blend, torch.Generator().manual_seed(0), keep_norm=False)
    a = 1 - (out / x).flatten(1).mean(1)
    assert a.min() >= -1e-5 and a.max() <= blend + 1e-5
    assert abs(a.mean().item() - blend / 2) < 0.05 * blend and a.max() > 0.95 * blend


@pytest.mark.parametrize("augment", [aug.gin, aug.randconv])
def test_a_tiny_blend_leaves_the_image_nearly_as_it_was(augment: T.Augment) -> None:
    """The augmentations pass `blend` on to mix: with a weight of at most 1e-4 the images move a hundred
    times less than with a weight of up to 1 (the same draws)."""
    x = batch()
    faint = augment(x.clone(), torch.Generator().manual_seed(1), p=1.0, blend=1e-4)
    full = augment(x.clone(), torch.Generator().manual_seed(1), p=1.0, blend=1.0)
    assert (faint - x).abs().max() < 0.01 * (full - x).abs().max()


def test_gin_depends_on_the_intensity_level() -> None:
    """The random biases make GIN more than a gain: halving an image does not halve its remapping."""
    x = batch()
    a = aug.gin(x.clone(), torch.Generator().manual_seed(3), p=1.0)
    b = aug.gin(0.5 * x, torch.Generator().manual_seed(3), p=1.0)
    assert not torch.allclose(b, 0.5 * a, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("augment", AUGMENTS)
def test_intensity_augments_can_invert_intensities(augment: T.Augment) -> None:
    """Non-monotone at the arms' strength: some draws make the bright square darker than its dark
    surround (a T1 -> T2-like change), which gamma and contrast never do."""
    x = torch.full((256, 3, 16, 16), 40.0)
    x[:, :, 4:12, 4:12] = 200.0
    out = augment(x.clone(), torch.Generator().manual_seed(0), p=1.0)
    inside, outside = out[:, 0, 6:10, 6:10].mean((1, 2)), out[:, 0, :2, :2].mean((1, 2))
    assert (inside < outside).float().mean() > 0.05 and (inside > outside).any()


def test_randconv_draws_odd_kernels_up_to_its_largest(monkeypatch) -> None:
    seen = set()
    real = aug.per_image_conv

    def spy(x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        seen.add(weights.shape[-1])
        return real(x, weights, bias)

    monkeypatch.setattr(aug, "per_image_conv", spy)
    for seed in range(40):
        aug.randconv(batch(n=2, size=12), torch.Generator().manual_seed(seed), kernel=7)
    assert seen == {1, 3, 5, 7}
    with pytest.raises(ValueError, match="kernel = 4"):
        aug.randconv(batch(n=2), kernel=4)


@pytest.mark.parametrize("normalize", ["fixed", "image", "equalize"])
@pytest.mark.parametrize("grey", [False, True])
def test_training_and_evaluation_batches_share_the_normalisation(normalize: str, grey: bool) -> None:
    """A training batch without random crops, flips or augmentations is the evaluation batch."""
    x = torch.randint(0, 256, (4, 3, 36, 36), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    train = T.train_transform(x, 36, g, scale=(1.0, 1.0), flip_p=0.0, normalize=normalize, grey=grey)
    evaluation = T.eval_transform(x, 36, resize_to=36, normalize=normalize, grey=grey)
    assert train.shape == evaluation.shape == (4, 3, 36, 36)
    assert torch.allclose(train, evaluation, atol=1e-4)


def test_training_batch_with_random_convolutions_is_seeded_and_finite() -> None:
    x = torch.randint(0, 256, (6, 3, 50, 40), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    augments = [aug.gin, aug.randconv, aug.location_scale]
    a = T.train_transform(x, 32, torch.Generator().manual_seed(3), intensity=augments, dtype=torch.bfloat16)
    b = T.train_transform(x, 32, torch.Generator().manual_seed(3), intensity=augments, dtype=torch.bfloat16)
    assert torch.equal(a, b) and a.dtype == torch.bfloat16 and torch.isfinite(a.float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment", AUGMENTS)
def test_intensity_augments_run_on_the_batch_device(augment: T.Augment) -> None:
    x = batch().cuda()
    out = augment(x.clone(), torch.Generator().manual_seed(1), p=1.0)
    cpu = augment(x.cpu(), torch.Generator().manual_seed(1), p=1.0)
    assert out.device == x.device and torch.allclose(out.cpu(), cpu, atol=1e-3)


def test_a_checkpoint_records_and_restores_its_normalisation(tmp_path) -> None:
    from resnet_scratch.checkpoint import checkpoint_metadata, save_model
    from resnet_scratch.models import build
    from resnet_scratch.predictor import Predictor

    model = build("resnet18", num_classes=4).eval()
    path = tmp_path / "model.safetensors"
    meta = checkpoint_metadata("resnet18", list("abcd"), 32, {}, (0.5,) * 3, (0.2,) * 3, False, "equalize", True)
    save_model(path, model, meta)
    prep = Predictor.load(path, device="cpu").prep
    assert (prep.normalize, prep.grey) == ("equalize", True)
    images = torch.randint(0, 256, (3, 3, 37, 37), dtype=torch.uint8)
    expected = T.eval_transform(images, 32, normalize="equalize", grey=True)
    assert torch.allclose(prep.batch(images, torch.arange(3)).float(), expected, atol=1e-5)
    shown = prep.shown(expected)
    assert shown.min() >= 0 and shown.max() <= 1


def test_a_checkpoint_with_an_unknown_normalisation_is_refused(tmp_path) -> None:
    from resnet_scratch.checkpoint import checkpoint_metadata, save_model
    from resnet_scratch.models import build
    from resnet_scratch.predictor import Predictor

    path = tmp_path / "model.safetensors"
    meta = checkpoint_metadata("resnet18", list("abcd"), 32, {}, (0.5,) * 3, (0.2,) * 3, False, "zscore")
    save_model(path, build("resnet18", num_classes=4), meta)
    with pytest.raises(ValueError, match="normalize 'zscore'"):
        Predictor.load(path, device="cpu")


def test_settings_check_the_strengths() -> None:
    from resnet_scratch.config import ConfigError, load_config

    assert load_config(None, {"normalize": "image", "gin": 0.5}).normalize == "image"
    for bad in (
        {"normalize": "zscore"},
        {"gin": 1.5},
        {"gin_blend": 0.0},
        {"gin_depth": 1},
        {"randconv_kernel": 4},
        {"location_scale": -0.1},
        {"location_scale_invert": 2.0},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_config(None, bad)
    for lever in ("gin", "randconv", "location_scale"):
        with pytest.raises(ConfigError, match="augment = false"):
            load_config(None, {"augment": False, lever: 0.5})


def test_bezier_curves_run_from_0_to_1_and_rise_or_fall_as_drawn() -> None:
    x, y = aug.bezier_lookup(200, torch.Generator().manual_seed(0), invert=0.5)
    assert (x.diff(dim=1) >= 0).all() and torch.allclose(x[:, [0, -1]], torch.tensor([0.0, 1.0], dtype=x.dtype))
    rises = (y.diff(dim=1) >= 0).all(dim=1)
    falls = (y.diff(dim=1) <= 0).all(dim=1)
    assert (rises | falls).all() and 70 < falls.sum() < 130
    assert torch.allclose(y[rises][:, [0, -1]], torch.tensor([0.0, 1.0], dtype=y.dtype))
    assert torch.allclose(y[falls][:, [0, -1]], torch.tensor([1.0, 0.0], dtype=y.dtype))


def test_the_tabulated_curve_matches_the_exact_one() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = aug.bezier_lookup(4, g, invert=0.5)
    v = torch.rand(4, 500, generator=g, dtype=torch.float64)
    assert torch.allclose(aug.through_curve(v, x, y), aug.interpolate(v, x, y), atol=2e-3)


def test_interpolate_matches_numpy() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = aug.bezier_lookup(3, g, invert=0.5, points=16)
    v = torch.rand(3, 50, generator=g, dtype=torch.float64)
    expected = np.stack([np.interp(v[i].numpy(), x[i].numpy(), y[i].numpy()) for i in range(3)])
    assert np.allclose(aug.interpolate(v, x, y).numpy(), expected)


@pytest.mark.parametrize("invert", [0.0, 1.0])
def test_location_scale_keeps_or_reverses_the_order_and_keeps_the_background(invert: float) -> None:
    """A rising curve keeps brighter tissue brighter; a falling one reverses it. Scale and shift are
    affine and positive, so they keep the curve's direction. A faint background stays as it was."""
    x = batch(n=16, size=32)
    x[:, :, :8] = 5.0  # a faint background, as JPEG slices have
    out = aug.location_scale(x.clone(), torch.Generator().manual_seed(0), p=1.0, invert=invert)
    assert out.min() >= 0 and out.max() <= 255 + 1e-3
    assert torch.equal(out[:, :, :8], x[:, :, :8])
    background = aug.head_background(x[:, 0].double() / 255).flatten(1)
    for i in range(16):
        head = ~background[i]
        a, b = x[i, 0].flatten()[head], out[i, 0].flatten()[head]
        steps = b[a.argsort()].diff()
        assert (steps >= -1e-3).all() if invert == 0 else (steps <= 1e-3).all()


def test_head_background_is_the_dark_joined_to_the_border() -> None:
    """Faint pixels around the head are background; a dark hole inside the head (fluid) is not, nor is
    tissue above a tenth of the bright end."""
    grey = torch.full((1, 12, 12), 3 / 255, dtype=torch.float64)  # faint JPEG background
    grey[0, 2:10, 2:10] = 0.9  # the head
    grey[0, 5:7, 5:7] = 0.0  # a dark hole inside it
    grey[0, 2, 2:10] = 0.05  # a dim rim, below a tenth of 0.9: joined to the background
    background = aug.head_background(grey)[0]
    assert background[0].all() and background[:, 0].all() and background[2, 2:10].all()
    assert not background[5:7, 5:7].any() and not background[3:10, 2:10].any()
    dark = torch.full((1, 6, 6), 4 / 255, dtype=torch.float64)
    assert aug.head_background(dark).all()  # never above 8 grey levels: a dark image is all background


def test_the_shift_can_darken_and_is_cut_on_the_heads_percentiles() -> None:
    """The cut looks at the head only: half the image black does not stop a shift downwards."""
    curved = torch.cat([torch.zeros(1, 100), torch.linspace(0.4, 0.6, 100)[None]], dim=1).double()
    background = curved == 0
    one = torch.ones(1, dtype=torch.float64)
    assert aug.cut_shift(curved, background, one, torch.tensor([-0.3], dtype=torch.float64)).item() == -0.3
    cut = aug.cut_shift(curved, background, one, torch.tensor([0.9], dtype=torch.float64))
    head = (curved[0, 100:] + cut).clamp(0, 1)
    assert 0.15 <= (head >= 1).double().mean() <= 0.25  # cut so that the 80th percentile lands at 1


def test_location_scale_saturates_about_a_fifth_of_the_head_at_most() -> None:
    """The cut keeps 60% of the head between its 20th and 80th percentiles inside the range. Pixels tied at a
    percentile may join the fifth beyond it (these images already saturate)."""
    x = batch(n=64, size=24)
    x[:, :, :6] = 0
    out = aug.location_scale(x.clone(), torch.Generator().manual_seed(2), p=1.0) / 255
    background = aug.head_background(x[:, 0].double() / 255).flatten(1)
    for i in range(64):
        head = out[i, 0].flatten()[~background[i]]
        assert (head <= 0).double().mean() <= 0.25 and (head >= 1).double().mean() <= 0.25
        assert head.std() > 0.01  # not flattened to one grey level


def test_location_scale_scales_within_its_range(monkeypatch) -> None:
    seen = []
    real = aug.cut_shift

    def spy(curved, background, scale, shift):
        seen.append(scale)
        return real(curved, background, scale, shift)

    monkeypatch.setattr(aug, "cut_shift", spy)
    aug.location_scale(batch(n=200, size=8), torch.Generator().manual_seed(0), p=1.0)
    scales = torch.cat(seen)
    assert scales.min() >= 0.9 and scales.max() <= 1.1 and scales.std() > 0.05
