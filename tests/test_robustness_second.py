"""The second reliability probe (issue 26), case by case: files we never wrote, a silent wrong export,
runs that a moved file or a power cut leaves unresumable, decompression bombs, NaN weights, a stale
decode cache, tracebacks for bad settings, an unscorable Testing split, forged output and silent
--class-map mistakes. Each test failed on the code before its fix."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet_scratch import train as train_module
from resnet_scratch.__main__ import main
from resnet_scratch.checkpoint import PENDING_BEST, checkpoint_metadata, save_model
from resnet_scratch.config import ConfigError, load_config
from resnet_scratch.data import load_split
from resnet_scratch.data.labels import parse_class_map
from resnet_scratch.files import remove_stale_temporaries, temporary_name
from resnet_scratch.models import build
from resnet_scratch.pretrained import build as build_with_weights
from resnet_scratch.train import fit
from weights_convert.__main__ import main as convert_cli

from conftest import make_folder, one_line_error

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def settings(data: Path, runs: Path, name: str, epochs: int, **extra: object) -> dict[str, object]:
    return {
        "data": str(data),
        "runs_dir": str(runs),
        "name": name,
        "image_size": 32,
        "epochs": epochs,
        "batch_size": 8,
        "lr": 0.01,
        "external": None,
        "deterministic": True,
    } | extra


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("second") / "data"
    return make_folder(root, {"Training": {c: 8 for c in CLASSES}, "Testing": {c: 2 for c in CLASSES}}, size=(40, 40))


def checkpoint(path: Path, model: torch.nn.Module, arch: str, options: dict) -> Path:
    save_model(path, model, checkpoint_metadata(arch, CLASSES, 32, options, (0.5,) * 3, (0.25,) * 3))
    return path


# 1. Files the package never wrote are never deleted


def test_only_our_own_stale_temporaries_are_removed(tmp_path: Path) -> None:
    theirs = [".notes.tmp", ".bash_history.tmp", ".x.12345.tmp", ".y.99999999.tmp", ".z.resnet_scratch.tmp"]
    for name in theirs:
        (tmp_path / name).write_text("not ours")
    stale = tmp_path / ".last.safetensors.99999999.resnet_scratch.tmp"
    stale.write_text("a killed writer's")
    live = temporary_name(tmp_path / "mine")  # this process's own, still being written
    live.write_text("in progress")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert all((tmp_path / name).exists() for name in theirs) and live.exists()


def test_evaluate_and_the_converter_leave_other_files_in_their_folders(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = checkpoint(tmp_path / "m.safetensors", build("resnet18", num_classes=4), "resnet18", {})
    out = tmp_path / "out"
    out.mkdir()
    (out / ".notes.tmp").write_text("mine")
    assert main(["evaluate", "--checkpoint", str(source), "--data", str(data), "--out", str(out)]) == 0
    assert (
        convert_cli(["--arch", "resnet18", "--src", str(source), "--dst", str(out / "r.pth"), "--to-torchvision"]) == 0
    )
    assert (out / ".notes.tmp").read_text() == "mine"


# 2. Weights under other builder options: refused, not silently wrong


@pytest.mark.parametrize(
    "arch, options, word",
    [("resnet50", {"stride_on": "1x1"}, "stride_on"), ("resnet18", {"shortcut": "C"}, "shortcut"),
     ("resnet18", {"skip": False}, "skip")],
)  # fmt: skip
def test_export_refuses_what_torchvision_cannot_represent(tmp_path: Path, capsys, arch, options, word) -> None:
    model = build(arch, num_classes=4, **options)
    source = checkpoint(tmp_path / "m.safetensors", model, arch, options)
    command = ["--arch", arch, "--src", str(source), "--dst", str(tmp_path / "m.pth"), "--to-torchvision"]
    assert convert_cli(command) == 2
    one_line_error(capsys, word, "torchvision cannot represent it")
    assert not (tmp_path / "m.pth").exists()


def test_weights_load_only_into_a_model_of_the_same_options(tmp_path: Path) -> None:
    v1 = checkpoint(tmp_path / "v1.safetensors", build("resnet50", num_classes=4, stride_on="1x1"), "resnet50",
                    {"stride_on": "1x1"})  # fmt: skip
    with pytest.raises(ValueError, match="stride_on='1x1'; this model has stride_on='3x3'"):
        build_with_weights("resnet50", num_classes=4, weights=v1)
    assert build_with_weights("resnet50", num_classes=4, weights=v1, stride_on="1x1") is not None
    basic = checkpoint(tmp_path / "r18.safetensors", build("resnet18", num_classes=4), "resnet18", {"stride_on": "1x1"})
    assert build_with_weights("resnet18", num_classes=4, weights=basic) is not None  # no 1x1: the same network


# 3 and 4. A run resumes without its starting weights, and after a power cut


def interrupted(data: Path, tmp_path: Path, monkeypatch, name: str, at_epoch: int, **extra: object):
    """A run of 3 epochs killed while saving the state of `at_epoch` (from 1; as by a crash)."""
    real = train_module.save_training_state

    def killed(folder, model, optimizer, scheduler, epoch, record):
        if epoch == at_epoch:
            raise KeyboardInterrupt
        real(folder, model, optimizer, scheduler, epoch, record)

    monkeypatch.setattr(train_module, "save_training_state", killed)
    config = load_config(None, settings(data, tmp_path, name, 3, **extra))
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    monkeypatch.setattr(train_module, "save_training_state", real)
    return config


def test_a_run_resumes_when_its_starting_weights_are_gone(data: Path, tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    start = checkpoint(tmp_path / "start.safetensors", build("resnet18", num_classes=4), "resnet18", {})
    config = interrupted(data, tmp_path, monkeypatch, "moved", 2, weights=str(start), freeze="backbone")
    start.unlink()  # moved, or a cleared cache
    fit(config, resume=True)
    assert json.loads((tmp_path / "moved" / "metrics.json").read_text())["best_epoch"] in (1, 2, 3)


def test_a_truncated_newest_state_resumes_from_the_one_before(data: Path, tmp_path: Path, monkeypatch, capsys):
    config = interrupted(data, tmp_path, monkeypatch, "cut", 3)
    folder = tmp_path / "cut"
    assert (folder / "state-1.safetensors").is_file() and (folder / "state.previous.json").is_file()
    (folder / "state-2.safetensors").write_bytes(b"")  # the newest state never reached the disk
    (folder / PENDING_BEST).write_bytes(b"")  # nor did a pending best
    capsys.readouterr()
    fit(config, resume=True)
    assert "resuming from the state before it, after epoch 1" in capsys.readouterr().out
    epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3] and (folder / "metrics.json").is_file()


@pytest.mark.parametrize("damage", ["emptied", "gone"])
def test_a_damaged_state_json_resumes_from_the_record_before(data: Path, tmp_path: Path, monkeypatch, capsys, damage):
    config = interrupted(data, tmp_path, monkeypatch, "torn", 3)
    if damage == "gone":
        (tmp_path / "torn" / "state.json").unlink()  # a resume must not silently start again from epoch 1
    else:
        (tmp_path / "torn" / "state.json").write_text("")  # the newest record never reached the disk
    (tmp_path / "torn" / "last.safetensors").unlink()  # and the model is rebuilt from best.safetensors
    capsys.readouterr()
    fit(config, resume=True)
    assert "resuming from the state before it, after epoch 1" in capsys.readouterr().out
    assert (tmp_path / "torn" / "metrics.json").is_file()


def test_a_best_of_the_abandoned_epoch_stays_the_best(data: Path, tmp_path: Path, monkeypatch) -> None:
    accuracies = iter([0.5, 0.9, 0.3, 0.4, 0.6])  # epoch 2 is best, then is redone worse after the fallback
    real = train_module.validate
    monkeypatch.setattr(train_module, "validate", lambda *a: real(*a) | {"accuracy": next(accuracies)})
    config = interrupted(data, tmp_path, monkeypatch, "fell", 3)
    (tmp_path / "fell" / "state-2.safetensors").write_bytes(b"")
    fit(config, resume=True)
    results = json.loads((tmp_path / "fell" / "metrics.json").read_text())
    assert results["best_epoch"] == 2 and results["val_accuracy"] == 0.9


# 5. Decompression bombs are skipped by name


def test_an_image_over_the_pixel_limit_is_skipped_by_name(data: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    Image.new("I;16", (300, 300)).save(copy / "Training" / "glioma" / "bomb.png")  # 90,000 px, a few hundred bytes
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # Pillow warns, and decodes, up to twice this
    split = load_split(copy, "Training")
    assert len(split) == 32
    assert any("bomb.png" in s.path and "megapixels" in s.reason for s in split.skipped)


# 6. NaN weights: an error, not a confident answer


def test_a_checkpoint_with_nan_weights_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    model = build("resnet18", num_classes=4)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    source = checkpoint(tmp_path / "nan.safetensors", model, "resnet18", {})
    image = next((data / "Testing" / "glioma").iterdir())
    assert main(["predict", "--checkpoint", str(source), "--json", str(image)]) == 2
    one_line_error(capsys, "fc.weight: holds NaN or infinite values")


def test_weights_that_overflow_give_an_error_not_nan(data: Path, tmp_path: Path, capsys) -> None:
    model = build("resnet18", num_classes=4)
    with torch.no_grad():
        model.fc.weight.fill_(3e38)  # finite, but the logits are not
    source = checkpoint(tmp_path / "big.safetensors", model, "resnet18", {})
    image = next((data / "Testing" / "glioma").iterdir())
    assert main(["predict", "--checkpoint", str(source), "--json", str(image)]) == 2
    one_line_error(capsys, "NaN or infinite")


def test_nan_starting_weights_are_refused(tmp_path: Path) -> None:
    model = build("resnet18", num_classes=4)
    with torch.no_grad():
        model.conv1.conv.weight[0, 0, 0, 0] = float("nan")
    source = checkpoint(tmp_path / "nan.safetensors", model, "resnet18", {})
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        build_with_weights("resnet18", num_classes=4, weights=source)


# 7. The decode cache never serves old pixels


def test_the_decode_cache_sees_a_file_swapped_in_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / "Training" / c).mkdir(parents=True)
        Image.new("RGB", (20, 20), (10, 10, 10)).save(root / "Training" / c / "x.bmp")
    target = root / "Training" / "a" / "x.bmp"
    cache = tmp_path / "cache"
    assert load_split(root, "Training", cache_dir=cache).images[0].max() == 10
    other = tmp_path / "other.bmp"
    Image.new("RGB", (20, 20), (200, 200, 200)).save(other)  # a BMP of the same size in bytes
    stat = target.stat()
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(other, target)  # the same size and mtime: only the inode and ctime tell
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns
    assert load_split(root, "Training", cache_dir=cache).images[0].max() == 200


# 8. Bad settings and metadata: one-line errors


@pytest.mark.parametrize(
    "text, key",
    [("lr = [1]", "lr"), ("epochs = {a = 1}", "epochs"), ("lr = inf", "lr"), ("weight_decay = inf", "weight_decay"),
     ('name = ["a"]', "name"), ("lr = nan", "lr")],
)  # fmt: skip
def test_a_setting_of_the_wrong_kind_is_a_config_error(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"^{key} = "):
        load_config(path)


def test_deeply_nested_metadata_is_a_one_line_error(data: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    model = build("resnet18", num_classes=4)
    meta = {k: json.dumps(v) for k, v in checkpoint_metadata("resnet18", CLASSES, 32, {}, (0,) * 3, (1,) * 3).items()}
    meta["extra"] = "[" * 200_000 + "]" * 200_000
    path = tmp_path / "deep.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    image = next((data / "Testing" / "glioma").iterdir())
    assert main(["predict", "--checkpoint", str(path), str(image)]) == 2
    one_line_error(capsys, "nested too deeply")
    assert (
        convert_cli(["--arch", "resnet18", "--src", str(path), "--dst", str(tmp_path / "d.pth"), "--to-torchvision"])
        == 2
    )
    one_line_error(capsys, "nested too deeply")


# 9. A Testing split that cannot be scored


def test_a_testing_split_with_no_readable_image_fails_before_the_first_epoch(data: Path, tmp_path: Path, monkeypatch):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for image in (copy / "Testing").rglob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    epochs = []
    monkeypatch.setattr(train_module, "train_one_epoch", lambda *a, **k: epochs.append(1))
    with pytest.raises(ValueError, match="Testing has no image that decodes"):
        fit(load_config(None, settings(copy, tmp_path, "blind", 1)))
    assert not epochs


def test_an_empty_leak_free_subset_is_reported_missing_not_fatal(data: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "Testing")
    shutil.copytree(copy / "Training", copy / "Testing")  # every Testing image is a Training image
    source = checkpoint(tmp_path / "m.safetensors", build("resnet18", num_classes=4), "resnet18", {})
    assert main(["evaluate", "--checkpoint", str(source), "--data", str(copy), "--out", str(tmp_path / "e")]) == 0
    results = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert results["test"]["samples"] == 32 and "test_leak_free" not in results
    assert "Testing (leak-free): no image left" in capsys.readouterr().out


# 10. predict's plain text cannot be forged


def test_predict_escapes_newlines_and_terminal_escapes(data: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    source_image = next((data / "Testing" / "glioma").iterdir())
    shutil.copy(source_image, folder / "a\nforged.jpg")
    classes = ["glioma\x1b[31m", "meningioma", "notumor", "pituitary"]
    path = tmp_path / "m.safetensors"
    save_model(
        path, build("resnet18", num_classes=4), checkpoint_metadata("resnet18", classes, 32, {}, (0,) * 3, (1,) * 3)
    )
    assert main(["predict", "--checkpoint", str(path), str(folder)]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "\\n" in out and "\x1b" not in out


# 11. --class-map mistakes are errors


def test_a_key_mapped_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="'a' is mapped twice"):
        parse_class_map("a=glioma,a=notumor")


def test_a_class_map_entry_that_names_no_folder_is_an_error(tmp_path: Path, capsys) -> None:
    folder = make_folder(tmp_path / "d", {"br35h": {"yes": 2, "no": 2}}, size=(40, 40)) / "br35h"
    source = checkpoint(tmp_path / "m.safetensors", build("resnet18", num_classes=4), "resnet18", {})
    command = ["evaluate", "--checkpoint", str(source), "--data", str(folder), "--out", str(tmp_path / "e")]
    assert main(command + ["--class-map", "Yes=glioma"]) == 2
    one_line_error(capsys, "'Yes'", "did you mean 'yes'?")
