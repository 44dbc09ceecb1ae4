"""Folder scan, decoding of every PIL mode, the decode-once store and its disk cache, bad input."""

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from resnet_scratch.data import DatasetError, decode, load_split, scan_split, to_rgb
from resnet_scratch.data import cache as cache_module

from conftest import make_folder, smooth_image

torchvision = pytest.importorskip("torchvision")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_classes_sorted_like_torchvision_and_hidden_entries_ignored(small_dataset: Path) -> None:
    train = small_dataset / "Training"
    smooth_image(99).save(train / "a_class" / "UPPER.JPG")
    smooth_image(98).save(train / "a_class" / "other.PnG")
    reference = torchvision.datasets.ImageFolder(str(train))
    # torchvision would take these for classes (and fail on them); we ignore them.
    (train / ".ipynb_checkpoints").mkdir()
    (train / "__MACOSX").mkdir()
    (train / "a_class" / ".DS_Store").write_bytes(b"\0\0")
    (train / "a_class" / ".hidden.jpg").write_bytes(b"")
    scan = scan_split(small_dataset, "Training")
    assert scan.classes == reference.classes == ["a_class", "b_class", "c_class"]
    assert len(scan.paths) == 6 + 2 + 5 + 4
    assert sum(1 for p in scan.paths if p.name in ("UPPER.JPG", "other.PnG")) == 2
    split = load_split(small_dataset, "Training")
    assert sorted(zip(split.paths, split.labels.tolist())) == sorted(reference.samples)


def png_bytes(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return Image.open(buffer)


def test_every_mode_becomes_three_channel_uint8() -> None:
    rgb = smooth_image(1, (16, 8))
    base = np.asarray(rgb)
    grey = np.asarray(rgb.convert("L"))
    assert np.array_equal(to_rgb(rgb), base)
    assert np.array_equal(to_rgb(rgb.convert("L")), np.repeat(grey[:, :, None], 3, 2))
    assert np.array_equal(to_rgb(rgb.convert("P")), np.asarray(rgb.convert("P").convert("RGB")))
    cmyk = rgb.convert("CMYK")
    assert np.array_equal(to_rgb(cmyk), np.asarray(cmyk.convert("RGB")))
    for image in (rgb, rgb.convert("L"), rgb.convert("P"), cmyk):
        out = to_rgb(image)
        assert out.dtype == np.uint8 and out.shape == (8, 16, 3)


def test_alpha_is_composited_on_black() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[0, 255], [128, 64]]
    out = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [200, 200, 200]
    assert out[1, 0, 0] == round(200 * 128 / 255) and out[1, 1, 0] == round(200 * 64 / 255)
    la = to_rgb(Image.fromarray(rgba[..., [0, 3]], "LA"))
    assert la[0, 0].tolist() == [0, 0, 0] and la[0, 1].tolist() == [200, 200, 200]


def test_sixteen_bit_images_are_rescaled_not_clipped() -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)  # uint16 -> mode I;16
    assert image.mode == "I;16"
    assert to_rgb(image)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert to_rgb(png_bytes(image))[0, :, 0].tolist() == [0, 1, 128, 255]  # PNG round trip: mode I or I;16
    wide = Image.fromarray(np.array([[0, 1000, 70000]], dtype=np.int32))  # mode I
    assert to_rgb(wide)[0, :, 0].tolist() == [0, round(1000 / 70000 * 255), 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = smooth_image(3, (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 40 wide, shown 20 wide
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    out = decode(path)
    assert out.shape == (40, 20, 3)
    with Image.open(path) as reopened:
        assert np.array_equal(out, np.asarray(ImageOps.exif_transpose(reopened).convert("RGB")))


def test_decoded_split_is_one_contiguous_tensor(small_dataset: Path) -> None:
    split = load_split(small_dataset, "Training", threads=2)
    assert split.images.dtype == torch.uint8
    assert split.images.is_contiguous(memory_format=torch.channels_last)  # one block, as PIL decodes
    assert split.images.shape == (15, 3, 48, 64)
    assert split.counts() == {"a_class": 6, "b_class": 5, "c_class": 4}
    for i in (0, 7, 14):
        expected = decode(Path(split.paths[i])).transpose(2, 0, 1)
        assert np.array_equal(split.images[i].numpy(), expected)


def test_images_of_another_size_are_resized_to_the_common_one(small_dataset: Path, caplog) -> None:
    smooth_image(50, (80, 80)).save(small_dataset / "Training" / "a_class" / "big.jpg")
    with caplog.at_level(logging.WARNING, logger="resnet_scratch.data"):
        split = load_split(small_dataset, "Training")
    assert split.images.shape[1:] == (3, 48, 64)
    assert "resized 1 image(s) to 48x64" in caplog.text


def test_disk_cache_rereads_only_changed_files(small_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    cache_dir = tmp_path / "cache"
    first = load_split(small_dataset, "Training", cache_dir=cache_dir)
    decoded: list[str] = []
    real_decode = cache_module.decode_hwc
    monkeypatch.setattr(cache_module, "decode_hwc", lambda p: decoded.append(p.name) or real_decode(p))
    second = load_split(small_dataset, "Training", cache_dir=cache_dir)
    assert decoded == [] and torch.equal(first.images, second.images)
    changed = small_dataset / "Training" / "b_class" / "b_class_002.jpg"
    smooth_image(1234).save(changed, quality=95)
    os.utime(changed, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    third = load_split(small_dataset, "Training", cache_dir=cache_dir)
    assert decoded == ["b_class_002.jpg"]
    fresh = load_split(small_dataset, "Training")
    assert torch.equal(third.images, fresh.images) and not torch.equal(third.images, first.images)


def test_cache_in_the_old_layout_is_decoded_again(small_dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    fresh = load_split(small_dataset, "Training", cache_dir=tmp_path / "cache")
    path = next((tmp_path / "cache").glob("*.safetensors"))
    index = cache_module._read_cache(path)[1]
    # What the store looked like before it became channels-last: N x 3 x H x W under "images".
    save_file({"images": fresh.images.contiguous()}, str(path), metadata={"index": json.dumps(index)})
    again = load_split(small_dataset, "Training", cache_dir=tmp_path / "cache")
    assert torch.equal(again.images, fresh.images)
    assert again.images.is_contiguous(memory_format=torch.channels_last)


def test_nothing_in_the_data_folder_is_written(small_dataset: Path, tmp_path: Path) -> None:
    before = snapshot(small_dataset)
    load_split(small_dataset, "Training", cache_dir=tmp_path / "cache")
    load_split(small_dataset, "Testing", cache_dir=tmp_path / "cache")
    assert snapshot(small_dataset) == before
    with pytest.raises(DatasetError, match="inside the dataset"):
        load_split(small_dataset, "Training", cache_dir=small_dataset / "cache")
    assert snapshot(small_dataset) == before


@pytest.fixture
def broken_dataset(small_dataset: Path) -> Path:
    a = small_dataset / "Training" / "a_class"
    good = (a / "a_class_000.jpg").read_bytes()
    (a / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (a / "corrupt.jpg").write_bytes(good[:200] + bytes(range(256)) * 4 + good[1224:])
    (a / "empty.jpg").write_bytes(b"")
    (a / "text.jpg").write_text("this is not an image\n")
    (a / "dangling.jpg").symlink_to(a / "does-not-exist.jpg")  # unreadable (root ignores chmod)
    return small_dataset


BAD = {"truncated.jpg", "empty.jpg", "text.jpg", "dangling.jpg"}


def test_bad_files_are_skipped_with_a_warning_naming_each(broken_dataset: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="resnet_scratch.data"):
        split = load_split(broken_dataset, "Training")
    skipped = {Path(s.path).name for s in split.skipped}
    assert BAD <= skipped
    for name in BAD:
        assert name in caplog.text
    assert f"skipped {len(split.skipped)} file(s)" in caplog.text
    assert split.classes == ["a_class", "b_class", "c_class"]
    names = {Path(p).name for p in split.paths}
    assert not names & BAD
    # A corrupt but decodable JPEG is kept only if PIL decodes it; never as grey filler.
    for i, p in enumerate(split.paths):
        assert np.array_equal(split.images[i].numpy(), decode(Path(p)).transpose(2, 0, 1))


def test_strict_raises_with_the_list(broken_dataset: Path) -> None:
    with pytest.raises(DatasetError) as error:
        load_split(broken_dataset, "Training", strict=True)
    for name in BAD:
        assert name in str(error.value)


def test_structural_problems_always_raise(small_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="split 'Validation' not found.*found folders: \\['Testing', 'Training'\\]"):
        load_split(small_dataset, "Validation")
    with pytest.raises(DatasetError, match="does not exist"):
        load_split(tmp_path / "nowhere", "Training")
    (tmp_path / "bare" / "Training").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders"):
        load_split(tmp_path / "bare", "Training")
    other = make_folder(tmp_path / "other", {"Testing": {"a_class": 1, "z_class": 1}})
    with pytest.raises(
        DatasetError, match=r"classes \['a_class', 'z_class'\], expected .*\['a_class', 'b_class', 'c_class'\]"
    ):
        load_split(other, "Testing", classes=["a_class", "b_class", "c_class"])


def test_real_dataset_decodes_completely(real_root: Path) -> None:
    split = load_split(real_root, "Testing")
    assert len(split) == 1311 and split.skipped == []
    assert split.counts() == {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300}
    assert split.images.shape == (1311, 3, 224, 224)
