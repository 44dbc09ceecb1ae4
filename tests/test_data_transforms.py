"""Batched transforms against torchvision's: crop statistics, eval preprocessing, determinism."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from resnet_scratch.data import decode
from resnet_scratch.data import transforms as T

from conftest import smooth_image

torchvision = pytest.importorskip("torchvision")
from torchvision import transforms as tvt  # noqa: E402


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.mark.parametrize("height, width", [(224, 224), (120, 300), (300, 90)])
def test_crop_distribution_matches_torchvision(height: int, width: int) -> None:
    n = 4000
    ours = T.crop_boxes(n, height, width, generator=torch.Generator().manual_seed(0)).numpy()
    torch.manual_seed(1)
    image = torch.empty(3, height, width)
    theirs = np.array(
        [tvt.RandomResizedCrop.get_params(image, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]) for _ in range(n)]
    )
    # Critical value of the two-sample KS test at alpha = 0.001: 1.95 * sqrt(2 / n) = 0.044.
    critical = 1.95 * math.sqrt(2 / n)
    for name, f in {
        "area": lambda b: b[:, 2] * b[:, 3] / (height * width),
        "aspect": lambda b: np.log(b[:, 3] / b[:, 2]),
        "top": lambda b: b[:, 0] / height,
        "left": lambda b: b[:, 1] / width,
    }.items():
        assert ks_statistic(f(ours), f(theirs)) < critical, name
    assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()


def test_fallback_is_torchvisions_centre_crop() -> None:
    # A 10 x 1000 strip: no try can fit, so every box is the clamped centre crop.
    boxes = T.crop_boxes(50, 10, 1000, scale=(0.9, 1.0), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    expected = tvt.RandomResizedCrop.get_params(torch.empty(3, 10, 1000), [0.9, 1.0], [3 / 4, 4 / 3])
    assert {tuple(b) for b in boxes.tolist()} == {tuple(expected)}


def test_one_scale_and_square_ratio_give_translated_crops_of_one_size() -> None:
    # The probe cropped 64 px from 72 px: one size, square, only the place drawn.
    area = (64 / 72) ** 2
    boxes = T.crop_boxes(500, 72, 72, scale=(area, area), ratio=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert set(boxes[:, 2].tolist()) == set(boxes[:, 3].tolist()) == {64}
    assert set(boxes[:, 0].tolist()) == set(boxes[:, 1].tolist()) == set(range(72 - 64 + 1))


def test_full_box_without_flip_is_the_identity() -> None:
    x = torch.rand(2, 3, 20, 30)
    boxes = torch.tensor([[0, 0, 20, 30], [0, 0, 20, 30]])
    out = T.resized_crops(x, boxes, 20)  # width squeezed 30 -> 20, height kept
    assert out.shape == (2, 3, 20, 20)
    square = torch.rand(2, 3, 16, 16)
    same = T.resized_crops(square, torch.tensor([[0, 0, 16, 16]] * 2), 16)
    torch.testing.assert_close(same, square, atol=1e-5, rtol=0)
    flipped = T.resized_crops(square, torch.tensor([[0, 0, 16, 16]] * 2), 16, torch.tensor([True, False]))
    torch.testing.assert_close(flipped[0], square[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped[1], square[1], atol=1e-5, rtol=0)


def test_crop_takes_the_box_region() -> None:
    x = torch.zeros(1, 1, 40, 40)
    x[..., 10:20, 25:35] = 1.0
    out = T.resized_crops(x, torch.tensor([[10, 25, 10, 10]]), 10)
    torch.testing.assert_close(out, torch.ones(1, 1, 10, 10))


def test_uint8_crops_equal_torchvisions_resized_crop() -> None:
    from torchvision.transforms.v2 import functional as tvf

    x = torch.from_numpy(np.array(smooth_image(11, (120, 90)))).permute(2, 0, 1)[None].repeat(6, 1, 1, 1)
    boxes = T.crop_boxes(6, 90, 120, generator=torch.Generator().manual_seed(0))
    flips = torch.tensor([True, False] * 3)
    ours = torch.cat(list(T.uint8_crops(x, boxes, 64, flips)))
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(
        torch.cat(list(T.uint8_crops(x.contiguous(memory_format=torch.channels_last), boxes, 64, flips))), ours
    )
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        theirs = tvf.resized_crop(x[i], top, left, h, w, [64, 64], antialias=True)
        theirs = theirs.flip(-1) if flips[i] else theirs
        assert (ours[i].int() - theirs.int()).abs().max() <= 1


def test_cpu_and_batched_grid_paths_agree_where_no_antialiasing_is_needed() -> None:
    x = torch.from_numpy(np.array(smooth_image(12, (64, 64)))).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)
    boxes = torch.tensor([[0, 0, 64, 64], [8, 4, 40, 48], [20, 20, 32, 32], [0, 10, 50, 30]])
    flips = torch.tensor([False, True, False, True])
    grid = T.resized_crops(x.float(), boxes, 64, flips)  # every box is enlarged: no aliasing
    uint8 = torch.cat(list(T.uint8_crops(x, boxes, 64, flips))).float()
    # At the box's edge grid_sample blends in the pixels just outside the box, where crop-then-
    # resize (torchvision, and the uint8 path) clamps to the crop: compare the interior.
    gap = (grid - uint8).abs()[..., 2:-2, 2:-2]
    assert gap.mean() < 0.5 and gap.max() <= 2


@pytest.mark.parametrize("channels_last", [True, False])
def test_normalize_pixels_is_imagenet_normalisation_block_by_block(monkeypatch, channels_last: bool) -> None:
    monkeypatch.setattr(T, "BLOCK_ELEMENTS", 100)  # 4 x 4 x 3 images: blocks of 2, the last one short
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(T.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(T.IMAGENET_STD).view(1, 3, 1, 1)
    expected = (x.float() / 255 - mean) / std
    out = T.normalize_pixels(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(T.normalize_pixels(x.float()), expected, atol=1e-6, rtol=0)
    # bf16 is the float32 result rounded once: what autocast would make of the float32 batch
    assert torch.equal(T.normalize_pixels(x, torch.bfloat16), out.to(torch.bfloat16))


def test_bf16_training_batch_is_the_float32_batch_rounded() -> None:
    x = torch.randint(0, 256, (6, 3, 50, 40), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    f32 = T.train_transform(x, 32, torch.Generator().manual_seed(3))
    bf16 = T.train_transform(x, 32, torch.Generator().manual_seed(3), dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and torch.equal(bf16, f32.to(torch.bfloat16))


@pytest.mark.parametrize("uint8", [True, False])
def test_rows_of_a_store_equal_the_gathered_batch(uint8: bool) -> None:
    store = torch.randint(0, 256, (10, 3, 40, 50), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    store = store if uint8 else store.float()  # float input takes the grid_sample path
    rows = torch.tensor([9, 2, 2, 5])
    direct = T.train_transform(store, 24, torch.Generator().manual_seed(1), rows=rows)
    gathered = T.train_transform(store[rows], 24, torch.Generator().manual_seed(1))
    assert direct.shape == (4, 3, 24, 24) and torch.equal(direct, gathered)


def test_flip_mask_mirrors_about_half_of_the_batch() -> None:
    flips = T.flip_mask(1000, generator=torch.Generator().manual_seed(0))
    assert 400 < flips.sum() < 600


def test_photometric_jitter_stays_in_range_and_differs_per_image() -> None:
    x = torch.full((64, 3, 16, 16), 128.0)
    x[:, :, 4:12, 4:12] = 200.0
    out = T.photometric_jitter(x.clone(), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    means = out.mean(dim=(1, 2, 3))
    assert means.std() > 3  # gamma, contrast and brightness differ from image to image
    again = T.photometric_jitter(x.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator decides everything


def test_training_batch_with_photometric_jitter_is_seeded() -> None:
    x = torch.randint(0, 256, (6, 3, 50, 40), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    a = T.train_transform(x, 32, torch.Generator().manual_seed(3), photometric=True)
    b = T.train_transform(x, 32, torch.Generator().manual_seed(3), photometric=True)
    plain = T.train_transform(x, 32, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == plain.shape and not torch.equal(a, plain)


def tv_eval(image: Image.Image, resize_to: int, size: int) -> torch.Tensor:
    pipeline = tvt.Compose(
        [
            tvt.Resize(resize_to),
            tvt.CenterCrop(size),
            tvt.ToTensor(),
            tvt.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD),
        ]
    )
    return pipeline(image)


def max_pixel_gap(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest difference in 0..1 pixel units (normalisation undone)."""
    std = torch.tensor(T.IMAGENET_STD).view(-1, 1, 1)
    return ((ours - theirs) * std).abs().max().item()


@pytest.mark.parametrize("size, resize_to", [(224, 256), (299, 342), (128, 146)])
@pytest.mark.parametrize("shape", [(224, 224), (300, 200), (180, 400)])
def test_eval_preprocessing_equals_torchvision(size: int, resize_to: int, shape: tuple[int, int]) -> None:
    image = smooth_image(7, shape)
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    ours = T.eval_transform(batch, size, resize_to)[0]
    assert max_pixel_gap(ours, tv_eval(image, resize_to, size)) <= 2 / 255


def test_eval_preprocessing_equals_torchvision_on_real_images(real_root: Path) -> None:
    paths = sorted((real_root / "Testing").rglob("*.jpg"))[::131]  # 10 images, L and RGB alike
    for path in paths:
        with Image.open(path) as image:
            reference = tv_eval(image.convert("RGB"), 256, 224)
        batch = torch.from_numpy(decode(path)).permute(2, 0, 1)[None]
        assert max_pixel_gap(T.eval_transform(batch, 224)[0], reference) <= 2 / 255, path


def test_default_eval_resize_is_torchvisions_ratio() -> None:
    x = torch.zeros(1, 3, 400, 400, dtype=torch.uint8)
    assert T.eval_transform(x, 224).shape == (1, 3, 224, 224)
    assert math.ceil(299 * 256 / 224) == 342


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    x = torch.randint(0, 256, (8, 3, 40, 50), dtype=torch.uint8)
    a = T.train_transform(x, 32, torch.Generator().manual_seed(5))
    b = T.train_transform(x, 32, torch.Generator().manual_seed(5))
    c = T.train_transform(x, 32, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 5),
    height=st.integers(8, 90),
    width=st.integers(8, 90),
    size=st.integers(8, 64),
    mode=st.sampled_from(["RGB", "L", "P", "CMYK", "RGBA", "LA"]),
)
def test_random_shapes_and_modes_give_finite_batches(n: int, height: int, width: int, size: int, mode: str) -> None:
    from resnet_scratch.data import to_rgb

    image = smooth_image(height * width, (width, height), mode)
    batch = torch.from_numpy(to_rgb(image)).permute(2, 0, 1)[None].repeat(n, 1, 1, 1)
    out = T.train_transform(batch, size, torch.Generator().manual_seed(0))
    assert out.shape == (n, 3, size, size) and torch.isfinite(out).all()
    crop = min(size, height, width)
    evaluated = T.eval_transform(batch, crop, crop)
    assert evaluated.shape == (n, 3, crop, crop) and torch.isfinite(evaluated).all()
