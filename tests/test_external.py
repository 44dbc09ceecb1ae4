"""Scoring any labelled folder (aliases, --class-map, "tumour", odd files), overlap across collections
(audit --against), and the shortcut probe."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_scratch.__main__ import main
from resnet_scratch.data import Split, default_external_root, default_root
from resnet_scratch.data.audit import audit_against
from resnet_scratch.data.labels import ANY_TUMOUR, parse_class_map, resolve_class, tumour_classes
from resnet_scratch.data.probe import shortcut_probe

from conftest import make_folder, smooth_image

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained on generated images with the four real class names, and its dataset."""
    root = tmp_path_factory.mktemp("ext")
    data = make_folder(
        root / "mri", {"Training": {c: 10 for c in CLASSES}, "Testing": {c: 2 for c in CLASSES}}, size=(40, 40)
    )
    flags = [
        "--data",
        str(data),
        "--runs-dir",
        str(root / "runs"),
        "--name",
        "m",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--external",
        "none",
    ]
    assert main(["train", *flags]) == 0
    return root / "runs" / "m" / "best.safetensors", data


def odd_files(folder: Path) -> int:
    """Images as other collections store them: 16-bit, RGBA, palette, CMYK, a PNG named .jpg, odd sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    base = smooth_image(3, (300, 120))
    Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(folder / "sixteen.png")
    base.convert("RGBA").save(folder / "alpha.png")
    base.convert("P").save(folder / "palette.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.save(folder / "really_a_png.jpg", format="PNG")
    smooth_image(4, (37, 512)).save(folder / "tall.jpg")
    return 6


@pytest.fixture(scope="module")
def external(checkpoint, tmp_path_factory) -> Path:
    """Folders named as other collections name them."""
    root = tmp_path_factory.mktemp("other")
    make_folder(root, {"kaggle_v1": {"glioma_tumor": 3, "no_tumor": 2, "pituitary_tumor": 2}}, size=(64, 80))
    make_folder(root, {"br35h": {"yes": 4, "no": 3}}, size=(90, 70))
    make_folder(root, {"mine": {"unusual_name": 2}}, size=(50, 50))
    odd_files(root / "odd" / "tumour")
    return root


def test_class_names_resolve_through_aliases_and_the_map() -> None:
    assert resolve_class("glioma_tumor", CLASSES) == "glioma"
    assert resolve_class("no", CLASSES) == "notumor" and resolve_class("yes", CLASSES) == ANY_TUMOUR
    assert resolve_class("tumour", CLASSES) == ANY_TUMOUR
    assert resolve_class("x", CLASSES, parse_class_map("x=meningioma,y=tumour")) == "meningioma"
    assert tumour_classes(CLASSES) == [0, 1, 3]
    with pytest.raises(ValueError, match="class folder 'blob' is none of the checkpoint's classes .*glioma_tumor"):
        resolve_class("blob", CLASSES)
    with pytest.raises(ValueError, match="expected old=new"):
        parse_class_map("x:meningioma")


def test_evaluate_a_folder_of_aliased_class_folders(checkpoint, external, tmp_path: Path, capsys) -> None:
    model, _ = checkpoint
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(model),
                "--data",
                str(external / "kaggle_v1"),
                str(external / "br35h"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "metrics.json").read_text())
    kaggle, br35h = results["external"]["kaggle_v1"], results["external"]["br35h"]
    assert kaggle["images"] == 7 and set(kaggle["recall"]) == {"glioma", "notumor", "pituitary"}
    assert kaggle["tumour_images"] == 5 and kaggle["no_tumour_images"] == 2
    assert br35h["images"] == 7 and br35h["tumour_images"] == 4 and br35h["no_tumour_images"] == 3
    assert br35h["confusion"]["rows"] == ["notumor", ANY_TUMOUR] and br35h["recall"] == {
        "notumor": br35h["specificity"]
    }
    predicted = list(br35h["predictions"].values())
    yes = [c for p, c in br35h["predictions"].items() if p.startswith("yes/")]
    assert len(predicted) == 7 and br35h["tumour_sensitivity"] == sum(c != "notumor" for c in yes) / 4
    report = (out / "report.md").read_text()
    assert "| kaggle_v1 | 7 |" in report and "errors-br35h.png" in report and (out / "confusion.png").is_file()
    assert "br35h: 7 images" in capsys.readouterr().out


def test_unknown_class_names_stop_with_one_line_unless_mapped(checkpoint, external, tmp_path: Path, capsys) -> None:
    model, _ = checkpoint
    args = ["evaluate", "--checkpoint", str(model), "--data", str(external / "mine"), "--out", str(tmp_path / "e")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unusual_name" in err and "glioma, meningioma" in err
    assert main([*args, "--class-map", "unusual_name=meningioma"]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["external"]["mine"]["recall"].keys() == {
        "meningioma"
    }


def test_images_of_any_size_and_mode_are_scored(checkpoint, external, tmp_path: Path) -> None:
    model, _ = checkpoint
    assert main(["evaluate", "--checkpoint", str(model), "--data", str(external / "odd"), "--out", str(tmp_path)]) == 0
    odd = json.loads((tmp_path / "metrics.json").read_text())["external"]["odd"]
    assert odd["images"] == 6 and odd["tumour_images"] == 6 and odd["accuracy"] is None


def test_a_dataset_root_and_folders_at_once(checkpoint, external, tmp_path: Path) -> None:
    model, data = checkpoint
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(model),
                "--data",
                str(data),
                str(external / "br35h"),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "metrics.json").read_text())
    assert (
        results["test"]["samples"] == 8 and results["test_leak_free"]["samples"] == 8 and "br35h" in results["external"]
    )


def test_audit_against_finds_planted_duplicates_and_writes_a_clean_list(checkpoint, tmp_path: Path, capsys) -> None:
    model, data = checkpoint
    other = tmp_path / "other"
    (other / "glioma").mkdir(parents=True)
    for i in range(3):  # pictures of their own (make_folder would repeat the dataset's first ones)
        smooth_image(1000 + i, (60, 60)).save(other / "glioma" / f"glioma_00{i}.jpg", quality=95)
    shutil.copy(data / "Training" / "glioma" / "glioma_000.jpg", other / "glioma" / "copy.jpg")  # identical
    with Image.open(data / "Testing" / "notumor" / "notumor_000.jpg") as image:  # near: enlarged, re-encoded
        image.resize((80, 80)).save(other / "glioma" / "enlarged.jpg", quality=60)
    listing = tmp_path / "clean.txt"
    assert main(["audit", str(data), "--against", str(other), "--write-clean-list", str(listing)]) == 0
    printed = capsys.readouterr().out
    assert "5 images" in printed and "1 identical to one there, 1 more near duplicates; 3 clean" in printed
    clean = set(listing.read_text().split())
    assert clean == {f"other/glioma/glioma_00{i}.jpg" for i in range(3)}
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(model),
                "--data",
                str(other),
                "--clean-list",
                str(listing),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["external"]["other"]["images"] == 3


def test_the_probe_reads_a_label_that_brightness_gives_away_and_not_a_random_one() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 4
    noise = torch.randint(0, 60, (120, 3, 32, 32), generator=g, dtype=torch.uint8)
    shifted = (noise + (labels * 50).view(-1, 1, 1, 1)).to(torch.uint8)  # each class a brighter scan

    def split(images: torch.Tensor) -> Split:
        return Split("Training", CLASSES, images.contiguous(memory_format=torch.channels_last), labels, [], [])

    telling = shortcut_probe(split(shifted), split(shifted))
    assert (
        telling["cv_accuracy"] > 0.95 and telling["test_accuracy"] > 0.95 and set(telling["cv_recall"]) == set(CLASSES)
    )
    blind = shortcut_probe(split(noise))
    assert blind["cv_accuracy"] < 0.5 and "test_accuracy" not in blind


@pytest.mark.slow
def test_the_real_external_sets_share_no_image_with_the_dataset() -> None:
    root, external = default_root(), default_external_root()
    if not (root / "Training").is_dir() or not (external / "sartaj").is_dir():
        pytest.skip(f"the real dataset or the external sets are not at {root}, {external}")
    report = audit_against(root, [external / "sartaj", external / "br35h-tumour"])
    sartaj, br35h = report["against"].values()
    assert (sartaj["images"], sartaj["identical"], br35h["images"], br35h["identical"], br35h["near"]) == (
        269,
        0,
        703,
        0,
        0,
    )
    # Three Sartaj slices fall within 4 pHash bits of one of ours; by eye two are other slices (a 64-bit
    # hash is coarse) and one a neighbouring slice of the same patient (docs/data.md).
    assert sartaj["near"] == 3 and len(sartaj["clean"]) == 266


@pytest.mark.slow
def test_evaluate_works_on_each_real_external_folder_with_data_alone(checkpoint, tmp_path: Path) -> None:
    model, _ = checkpoint
    root, external = default_root(), default_external_root()
    if not (root / "Testing").is_dir() or not (external / "sartaj").is_dir():
        pytest.skip(f"the real dataset or the external sets are not at {root}, {external}")
    folders = [external / "sartaj", external / "br35h-tumour", root / "Testing"]
    assert main(["evaluate", "--checkpoint", str(model), "--data", *map(str, folders), "--out", str(tmp_path)]) == 0
    sets = json.loads((tmp_path / "metrics.json").read_text())["external"]
    assert sets["sartaj"]["images"] == 269 and sets["br35h-tumour"]["images"] == 703
    assert sets["br35h-tumour"]["accuracy"] is None and sets["Testing"]["images"] == 1311


@pytest.mark.parametrize("bf16", ["true", "false"])
def test_evaluate_writes_the_probabilities_predict_prints(tmp_path: Path, capsys, bf16: str) -> None:
    """One Predictor behind both commands: the same files get the same probabilities (bf16 on and off;
    on a CPU without bf16, "true" runs float32 in both)."""
    from resnet_scratch.checkpoint import checkpoint_metadata, save_model
    from resnet_scratch.models import build

    folder = make_folder(tmp_path / "data", {"set": {"glioma": 3, "notumor": 3}}, size=(70, 52)) / "set"
    torch.manual_seed(0)
    model = build("resnet18", num_classes=4).eval()
    checkpoint = tmp_path / "model.safetensors"
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    save_model(checkpoint, model, checkpoint_metadata("resnet18", classes, 32, {}, (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)))
    common = ["--checkpoint", str(checkpoint), "--device", "cpu", "--bf16", bf16]
    assert main(["evaluate", *common, "--data", str(folder), "--out", str(tmp_path / "e")]) == 0
    with open(tmp_path / "e" / "predictions.csv") as f:
        written = {row["path"]: row for row in csv.DictReader(f)}
    capsys.readouterr()
    assert main(["predict", *common, "--json", str(folder)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == len(written) == 6
    for result in printed:
        row = written[result["path"]]
        assert row["predicted"] == result["class"]
        assert max(abs(float(row[f"p_{c}"]) - p) for c, p in result["probabilities"].items()) <= 1e-6
