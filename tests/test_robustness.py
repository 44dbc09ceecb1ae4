"""What a bad-input and crash probe broke, case by case (issue: reliability). Each test failed on the
code before its fix; the README's promises (one-line errors with exit code 2, nothing lost on a
crash) are checked through the public commands."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_scratch import train as train_module
from resnet_scratch.__main__ import main
from resnet_scratch.checkpoint import (
    PENDING_BEST,
    RunLock,
    encode_metadata,
    load_model_file,
    read_tensors,
    save_model,
)
from resnet_scratch.config import load_config
from resnet_scratch.data import load_split
from resnet_scratch.train import fit
from weights_convert.__main__ import main as convert_cli

from conftest import make_folder, one_line_error, smooth_image

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def flags(data: Path, runs: Path, name: str, epochs: int = 1, **extra: str) -> list[str]:
    base = {
        "data": str(data),
        "runs-dir": str(runs),
        "name": name,
        "image-size": "32",
        "epochs": str(epochs),
        "batch-size": "8",
        "lr": "0.01",
        "external": "none",
        "deterministic": "true",
    } | extra
    return [part for key, value in base.items() for part in (f"--{key}", value)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust") / "data"
    return make_folder(root, {"Training": {c: 10 for c in CLASSES}, "Testing": {c: 2 for c in CLASSES}}, size=(40, 40))


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", *flags(data, runs, "done", epochs=2)]) == 0
    return runs / "done"


# 1. A symlink loop in a class folder


def test_a_link_to_the_parent_folder_is_not_followed(data: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "Training" / "glioma" / "loop").symlink_to("..")
    outside = tmp_path / "elsewhere.jpg"
    smooth_image(7).save(outside)
    (copy / "Training" / "glioma" / "stray.jpg").symlink_to(outside)
    split = load_split(copy, "Training")
    assert len(split) == 40 and split.counts() == dict.fromkeys(CLASSES, 10)
    reasons = {Path(s.path).name: s.reason for s in split.skipped}
    assert reasons["loop"] == "a link to a folder: not followed"
    assert "outside" in reasons["stray.jpg"]


def test_a_class_folder_that_links_to_its_split_and_a_second_link_to_one_image(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "Training" / "zz_loop").symlink_to("..")  # a "class" that would hold every image again
    (copy / "Training" / "glioma" / "again.jpg").symlink_to("glioma_000.jpg")
    split = load_split(copy, "Training")
    assert split.classes == list(CLASSES) and len(split) == 40
    reasons = {Path(s.path).name: s.reason for s in split.skipped}
    assert "not followed" in reasons["zz_loop"] and "listed already" in reasons["again.jpg"]


def test_a_class_folder_linked_to_another_split_is_not_followed_but_one_outside_is(
    data: Path, tmp_path: Path, capsys
) -> None:
    """Training/glioma -> ../Testing/glioma would train on Testing; a class folder kept elsewhere is fine."""
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "Training" / "glioma")
    (copy / "Training" / "glioma").symlink_to(copy / "Testing" / "glioma")
    split = load_split(copy, "Training")
    assert "glioma" not in split.classes and len(split) == 30
    reasons = {Path(s.path).name: s.reason for s in split.skipped}
    assert "not followed" in reasons["glioma"]
    assert main(["train", *flags(copy, tmp_path / "runs", "leak")]) == 2
    one_line_error(capsys, "classes")
    elsewhere = tmp_path / "elsewhere" / "glioma"
    shutil.copytree(data / "Training" / "glioma", elsewhere)
    (copy / "Training" / "glioma").unlink()
    (copy / "Training" / "glioma").symlink_to(elsewhere)
    split = load_split(copy, "Training")
    assert split.counts() == dict.fromkeys(CLASSES, 10)


def test_predict_scans_folders_by_the_same_rule(run: Path, data: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    shutil.copytree(data / "Testing" / "glioma", folder)
    (folder / "loop").symlink_to("..")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run / "best.safetensors"), "--json", str(folder)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum("class" in r for r in results) == 2
    assert [r["skipped"] for r in results if "skipped" in r] == ["a link to a folder: not followed"]


# 2. The package's own checkpoints on its documented paths


def test_a_run_checkpoint_converts_to_torchvision_and_back_into_training(run: Path, data: Path, tmp_path: Path) -> None:
    pth = tmp_path / "x.pth"
    src = str(run / "best.safetensors")
    assert convert_cli(["--arch", "resnet18", "--src", src, "--dst", str(pth), "--to-torchvision"]) == 0
    assert "fc.weight" in torch.load(pth, weights_only=True)
    assert main(["train", *flags(data, tmp_path, "again"), "--weights", src]) == 0
    assert main(["train", *flags(data, tmp_path, "from_pth"), "--weights", str(pth)]) == 0


# 3. Changing settings on --resume


@pytest.mark.parametrize(
    "change", [["--lr", "0.5"], ["--image-size", "64"], ["--schedule", "onecycle"], ["--model", "resnet34"]]
)
def test_resume_refuses_a_changed_setting_and_leaves_the_run_resumable(
    run: Path, tmp_path: Path, capsys, change: list[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "config.json").read_text()
    assert main(["train", "--resume", str(copy), *change]) == 2
    one_line_error(capsys, change[0][2:].replace("-", "_"), "start a new run")
    assert (copy / "config.json").read_text() == before
    assert main(["train", "--resume", str(copy)]) == 0  # finished: it only re-tests


def test_resume_on_data_with_other_classes_is_one_line(run: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    layout = {"Training": {"x": 10, "y": 10}, "Testing": {"x": 1, "y": 1}}
    other = make_folder(tmp_path / "other", layout, size=(40, 40))
    assert main(["train", "--resume", str(copy), "--data", str(other)]) == 2
    one_line_error(capsys, "classes")


# 4. A kill between the best weights and the training state


def test_a_best_written_ahead_of_the_state_is_not_taken_for_the_committed_best(
    data: Path, tmp_path: Path, monkeypatch
) -> None:
    accuracies = iter([0.3, 0.6, 0.9])
    real_validate, real_save_state = train_module.validate, train_module.save_training_state

    def rising(*args, **kwargs):
        return real_validate(*args, **kwargs) | {"accuracy": next(accuracies)}

    def killed_at_epoch_2(folder, model, optimizer, scheduler, epoch, extra):
        if epoch == 2:
            raise KeyboardInterrupt  # as if killed after best.pending was written, before the state
        real_save_state(folder, model, optimizer, scheduler, epoch, extra)

    monkeypatch.setattr(train_module, "validate", rising)
    monkeypatch.setattr(train_module, "save_training_state", killed_at_epoch_2)
    pairs = flags(data, tmp_path, "killed", epochs=3)
    config = load_config(None, {key[2:]: value for key, value in zip(pairs[::2], pairs[1::2])})
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    folder = tmp_path / "killed"
    assert (folder / PENDING_BEST).is_file() and load_model_file(folder / "best.safetensors")[1]["epoch"] == 1
    (folder / ".last.safetensors.99999999.resnet_scratch.tmp").write_bytes(
        b"x" * 100
    )  # what a SIGKILL mid-write leaves
    monkeypatch.setattr(train_module, "save_training_state", real_save_state)
    accuracies = iter([0.6, 0.9])
    fit(config, resume=True)
    results = json.loads((folder / "metrics.json").read_text())
    assert results["best_epoch"] == 3 == load_model_file(folder / "best.safetensors")[1]["epoch"]
    assert not list(folder.glob(".*.tmp")) and not (folder / PENDING_BEST).exists()


def test_a_pending_best_of_an_uncommitted_epoch_is_discarded(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    state = json.loads((copy / "state.json").read_text())
    weights, meta = load_model_file(copy / "best.safetensors")
    save_model(copy / PENDING_BEST, torch.nn.Linear(1, 1), meta | {"epoch": state["best"]["epoch"] + 5})
    assert main(["train", "--resume", str(copy)]) == 0
    assert not (copy / PENDING_BEST).exists()
    assert read_tensors(copy / "best.safetensors")[0].keys() == weights.keys()  # the committed best stayed


def test_a_pending_best_of_the_committed_epoch_is_promoted(run: Path, tmp_path: Path) -> None:
    """Killed after state.json named the new best, before the rename: resume finishes the rename."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    state = json.loads((copy / "state.json").read_text())
    weights, meta = load_model_file(copy / "best.safetensors")
    state["best"]["epoch"] = 2
    (copy / "state.json").write_text(json.dumps(state))
    shutil.copy(copy / "last.safetensors", copy / PENDING_BEST)  # epoch 2's weights, metadata epoch 2
    from safetensors.torch import save_file

    save_file(weights, str(copy / "best.safetensors"), metadata=encode_metadata(meta | {"epoch": 1}))
    assert load_model_file(copy / PENDING_BEST)[1]["epoch"] == 2
    assert main(["train", "--resume", str(copy)]) == 0
    assert not (copy / PENDING_BEST).exists() and load_model_file(copy / "best.safetensors")[1]["epoch"] == 2
    assert json.loads((copy / "metrics.json").read_text())["best_epoch"] == 2


# 5. A clean list that cannot be written or matches nothing


def test_clean_list_with_a_name_that_is_not_utf8(data: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    odd = os.fsencode(copy / "Testing" / "glioma") + b"/caf\xe9.jpg"
    smooth_image(99, (40, 40)).save(os.fsdecode(odd))
    listing = tmp_path / "clean.txt"
    listing.write_text("old contents\n")
    assert main(["audit", str(copy), "--write-clean-list", str(listing)]) == 0
    lines = listing.read_bytes().splitlines()
    assert b"Testing/glioma/caf\xe9.jpg" in lines and b"old contents" not in lines
    from resnet_scratch.data.run import clean_rows, read_clean_list

    test = load_split(copy, "Testing")
    assert len(clean_rows(test, copy / "Testing", listing)) == len(read_clean_list(listing))


def test_a_clean_list_that_matches_nothing_is_an_error(run: Path, data: Path, tmp_path: Path, capsys) -> None:
    listing = tmp_path / "clean.txt"
    listing.write_text("Testing/nothing/here.jpg\n")
    args = [
        "evaluate",
        "--checkpoint",
        str(run / "best.safetensors"),
        "--data",
        str(data),
        "--clean-list",
        str(listing),
    ]
    assert main(args) == 2
    one_line_error(capsys, "names none of the")


# 6. Two processes on one run folder


def test_a_run_folder_in_use_is_refused(run: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    lock = RunLock(copy)
    try:
        assert main(["train", "--resume", str(copy)]) == 2
        one_line_error(capsys, "being written by another process", str(os.getpid()))
    finally:
        lock.release()
    assert main(["train", "--resume", str(copy)]) == 0


# 7. An empty class folder


def test_an_empty_training_class_folder_is_an_error_not_a_class(data: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "Training" / "zz_empty").mkdir()
    assert main(["train", *flags(copy, tmp_path, "x")]) == 2
    one_line_error(capsys, "zz_empty has no images")


def test_a_training_split_where_no_file_decodes_names_its_classes(tmp_path: Path, capsys) -> None:
    """Not the misleading 'val_fraction leaves 0 training images' of an empty tensor."""
    root = tmp_path / "data"
    for split in ("Training", "Testing"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            (root / split / c / "a.jpg").write_text("text, not a JPEG")
    assert main(["train", *flags(root, tmp_path / "runs", "x")]) == 2
    one_line_error(capsys, "have no readable images", "glioma")


# 8. Tracebacks where one line was promised


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--device", "cuda:abc"], "device = 'cuda:abc'"),
        (["--name", "../../x"], "name = '../../x'"),
        (["--seed", "-1"], "seed = -1"),
    ],
)
def test_bad_settings_stop_before_any_work(data: Path, tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    assert main(["train", *flags(data, tmp_path, "x"), *extra]) == 2
    one_line_error(capsys, needle)
    assert not list(tmp_path.iterdir()) and not (tmp_path.parent.parent / "x").exists()  # nothing made anywhere


def test_a_runs_folder_that_cannot_be_written(data: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", *flags(data, blocker, "x")]) == 2
    one_line_error(capsys, str(blocker))
    (tmp_path / "taken").write_text("a file")
    assert main(["train", *flags(data, tmp_path, "taken")]) == 2
    one_line_error(capsys, "is not a folder")


def test_a_disk_that_fills_after_the_best_weights_is_one_line_and_resumable(
    data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The issue's case: best written, then no room for the last checkpoint or the state."""
    from resnet_scratch import checkpoint

    real = checkpoint.save_file

    def full_after_the_best(tensors, filename, metadata=None):
        if PENDING_BEST in str(filename):
            return real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"half a file")
        raise Exception("I/O error: No space left on device (os error 28)")  # safetensors' own error type

    monkeypatch.setattr(checkpoint, "save_file", full_after_the_best)
    assert main(["train", *flags(data, tmp_path, "full")]) == 2
    one_line_error(capsys, "No space left on device")
    folder = tmp_path / "full"
    assert not list(folder.glob(".*.tmp")) and not (folder / "state.json").exists()
    monkeypatch.setattr(checkpoint, "save_file", real)  # room again: the run starts over in place
    assert main(["train", "--resume", str(folder)]) == 0
    assert json.loads((folder / "metrics.json").read_text())["best_epoch"] == 1


def test_a_decode_cache_that_cannot_be_written_is_skipped_with_a_warning(
    data: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    """The cache only saves time: a full disk while writing it must not stop the run."""
    from resnet_scratch.data import cache

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise Exception("I/O error: No space left on device (os error 28)")  # safetensors' own error type

    monkeypatch.setattr(cache, "save_file", full)
    split = load_split(data, "Training", cache_dir=tmp_path / "cache")
    assert len(split) == 40
    assert "decode cache not written" in caplog.text and "No space left" in caplog.text
    assert not list((tmp_path / "cache").glob("*"))


def test_weights_convert_refuses_a_folder_or_its_source_as_destination(
    run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = str(run / "best.safetensors")
    assert convert_cli(["--arch", "resnet18", "--src", src, "--dst", str(tmp_path), "--to-torchvision"]) == 2
    one_line_error(capsys, "is a folder")
    assert not list(tmp_path.iterdir())
    copy = tmp_path / "w.safetensors"
    shutil.copy(src, copy)
    size = copy.stat().st_size
    assert convert_cli(["--arch", "resnet18", "--src", str(copy), "--dst", str(copy)]) == 2
    one_line_error(capsys, "is the source file")
    assert copy.stat().st_size == size


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("input_size", -5, "input_size -5"),
        ("num_classes", 1e12, "num_classes 1000000000000.0"),
        ("classes", ["a", "b"], "does not match its 2 class names"),
        ("std", [0, 1, 1], "must be positive"),
    ],
)
def test_crafted_checkpoint_metadata_is_refused(
    run: Path, tmp_path: Path, capsys, key: str, value, needle: str
) -> None:
    weights, meta = load_model_file(run / "best.safetensors")
    crafted = tmp_path / "crafted.safetensors"
    from safetensors.torch import save_file

    save_file(weights, str(crafted), metadata=encode_metadata(meta | {key: value}))
    image = run.parent / "image.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(crafted), str(image)]) == 2
    one_line_error(capsys, needle)


def test_a_torn_metrics_line_does_not_block_resume(run: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "lr": 0.0')  # a write cut short
    assert main(["train", "--resume", str(copy)]) == 0
    assert [json.loads(line)["epoch"] for line in (copy / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# 10. predict: bounded memory, every result printed, bad files and tiny images named


def test_predict_streams_in_batches_and_goes_on_past_a_bad_file(
    run: Path, data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from resnet_scratch import predictor as predictor_module

    sizes = []
    real = predictor_module.model_from_checkpoint

    def counting(path):
        model, meta = real(path)
        model.register_forward_hook(lambda m, i, o: sizes.append(len(i[0])))
        return model, meta

    monkeypatch.setattr(predictor_module, "model_from_checkpoint", counting)
    folder = tmp_path / "mixed"
    shutil.copytree(data / "Testing" / "glioma", folder)
    shutil.copytree(data / "Testing" / "notumor", folder, dirs_exist_ok=True)
    (folder / "notes.txt").write_text("a file that is not an image, by its name")
    command = ["predict", "--checkpoint", str(run / "best.safetensors"), "--batch-size", "2", str(folder)]
    assert main(command) == 0  # the text file is listed, not an error
    assert f"{folder / 'notes.txt'}: skipped, not an image file extension" in capsys.readouterr().out
    (folder / "aaa_broken.jpg").write_text("not an image")
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(folder / "zzz_tiny.png")
    sizes.clear()
    assert main(command) == 2  # an image that cannot be read is
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 7 and lines[0].startswith(str(folder / "aaa_broken.jpg") + ": skipped")
    assert max(sizes) <= 2 and sum(sizes) == 5
    assert "warning: " in captured.err and "zzz_tiny.png: only 1x1 px" in captured.err


def test_explain_grid_is_bounded_and_a_folder_gets_one_file_per_image(
    run: Path, data: Path, tmp_path: Path, monkeypatch
) -> None:
    from resnet_scratch import predict as predict_module

    monkeypatch.setattr(predict_module, "GRID_LIMIT", 3)
    calls = []
    real = predict_module.grad_cam
    monkeypatch.setattr(
        predict_module, "grad_cam", lambda model, batch, target: calls.append(len(batch)) or real(model, batch, target)
    )
    checkpoint = str(run / "best.safetensors")
    grid_flags = ["--explain", str(tmp_path / "g.png"), "--batch-size", "2"]
    assert main(["predict", "--checkpoint", checkpoint, str(data / "Testing"), *grid_flags]) == 0
    with Image.open(tmp_path / "g.png") as grid:
        assert grid.size[1] <= 3 * 300 + 50  # three rows, not eight
    assert calls == [2, 2]  # no backward pass once the grid is full
    assert (
        main(["predict", "--checkpoint", checkpoint, str(data / "Testing"), "--explain", str(tmp_path / "each")]) == 0
    )
    assert len(list((tmp_path / "each").glob("*.gradcam.png"))) == 8


# 11. Smaller ones


def test_val_fraction_leaving_no_training_image_names_the_setting(tmp_path: Path, capsys) -> None:
    tiny = make_folder(
        tmp_path / "d", {"Training": {c: 1 for c in CLASSES}, "Testing": {c: 1 for c in CLASSES}}, size=(40, 40)
    )
    assert main(["train", *flags(tiny, tmp_path, "x"), "--val-fraction", "0.9"]) == 2
    one_line_error(capsys, "val_fraction 0.9 leaves 0 training")


def test_a_toml_file_that_is_not_utf8_is_named(data: Path, tmp_path: Path, capsys) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_bytes(b'model = "resnet18"\n# caf\xe9\n')
    assert main(["train", "--config", str(toml)]) == 2
    one_line_error(capsys, str(toml), "not UTF-8")


@pytest.mark.parametrize("poison", ["int64", "nan"])
def test_weights_that_are_not_floats_or_not_finite_do_not_convert(tmp_path: Path, capsys, poison: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    state = torchvision.models.resnet18().state_dict()
    state["conv1.weight"] = state["conv1.weight"].long() if poison == "int64" else state["conv1.weight"] * float("nan")
    src = tmp_path / "weights.pth"
    torch.save(state, src)
    assert convert_cli(["--arch", "resnet18", "--src", str(src), "--dst", str(tmp_path / "o.safetensors")]) == 2
    one_line_error(capsys, "conv1.weight", "int64" if poison == "int64" else "NaN")
