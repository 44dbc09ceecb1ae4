"""The training engine on generated data: settings, run folder, resume after SIGKILL, NaN, evaluate."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_scratch import train as train_module
from resnet_scratch.__main__ import main, parser
from resnet_scratch.checkpoint import load_model_file
from resnet_scratch.config import Config, ConfigError, flags_given, load_config
from resnet_scratch.cost import forward_macs, reference_macs
from resnet_scratch.loss import CrossEntropy
from resnet_scratch.runtime import TrainingDiverged
from resnet_scratch.studies.brain_mri import weak_folder
from resnet_scratch.study import Study
from resnet_scratch.train import fit

from conftest import make_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes, 24 training and 4 testing images each, 40x40."""
    root = tmp_path_factory.mktemp("tiny")
    return make_folder(root, {"Training": {c: 24 for c in "abcd"}, "Testing": {c: 4 for c in "abcd"}}, size=(40, 40))


def tiny_flags(data: Path, runs: Path, name: str, epochs: int = 2) -> dict[str, str]:
    return {
        "data": str(data),
        "runs_dir": str(runs),
        "name": name,
        "model": "resnet18",
        "image_size": "32",
        "epochs": str(epochs),
        "batch_size": "8",
        "lr": "0.01",
        "deterministic": "true",
        "external": "none",
    }


def test_settings_layer_defaults_file_and_flags(tmp_path: Path) -> None:
    assert Config().lr == 1e-3 and Config().momentum == 0.9 and Config().step_size == 7 and Config().gamma == 0.1
    toml = tmp_path / "exp.toml"
    toml.write_text('model = "resnet50"\nlr = 0.01\nepochs = 3\nbf16 = false\n')
    args = parser().parse_args(["train", "--lr", "0.05", "--batch-size=16", "--weights", "none"])
    config = load_config(toml, flags_given(args))
    assert (config.model, config.lr, config.epochs, config.bf16, config.batch_size, config.weights) == (
        "resnet50",
        0.05,
        3,
        False,
        16,
        None,
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"learning_rate": "0.1"}, "unknown setting 'learning_rate'"),
        ({"lr": "fast"}, "lr = 'fast': expected float"),
        ({"lr": "-1"}, "lr = -1.0: must be positive"),
        ({"epochs": "2.5"}, "epochs = '2.5': expected int"),
        ({"model": "resnet51"}, "model = 'resnet51': must be one of"),
        ({"bf16": "maybe"}, "bf16 = 'maybe': expected bool"),
        ({"freeze": "backbone"}, "needs weights"),
    ],
)
def test_bad_settings_name_the_key(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, flags)


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("momentun = 0.8\n")
    with pytest.raises(ConfigError, match=f"unknown setting 'momentun' \\(from {toml}\\)"):
        load_config(toml)


@pytest.fixture(scope="module")
def finished_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return fit(load_config(None, tiny_flags(tiny, runs, "done", epochs=2)))


def test_run_folder_holds_everything(finished_run: Path) -> None:
    names = {p.name for p in finished_run.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "metrics.json",
        "best.safetensors",
        "last.safetensors",
        "state.json",
        "report.md",
        "curves.png",
        "confusion.png",
        "predictions.png",
    } <= names
    config = json.loads((finished_run / "config.json").read_text())
    assert config["config"]["model"] == "resnet18" and config["commit"] and config["environment"]["torch"]
    epochs = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]  # counted from 1, as the console and report count
    with open(finished_run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [{k: float(v) for k, v in row.items()} for row in table] == epochs  # the same numbers, same order
    assert json.loads((finished_run / "state.json").read_text())["epoch"] == 2  # the epochs done
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_s", "seconds"} <= set(
        epochs[0]
    )
    results = json.loads((finished_run / "metrics.json").read_text())
    best = max(epochs, key=lambda e: e["val_accuracy"])
    assert results["best_epoch"] == best["epoch"]  # Testing uses the checkpoint chosen on validation
    assert results["test"]["samples"] == 16 and len(results["test"]["confusion_matrix"]) == 4
    assert "top2_accuracy" in results["test"] and "top4_accuracy" not in results["test"]
    _, meta = load_model_file(finished_run / "best.safetensors")
    assert meta["arch"] == "resnet18" and meta["classes"] == ["a", "b", "c", "d"] and meta["input_size"] == 32
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["epoch"] == results["best_epoch"]
    report = (finished_run / "report.md").read_text()
    assert f"Best epoch: {results['best_epoch']}," in report and "\n| 2 | " in report
    cost = results["training_cost"]  # images seen x multiply-adds, whatever the machine
    seen = [round(e["images_per_s"] * e["seconds"]) for e in epochs]
    assert [e["train_macs"] for e in epochs] == [3 * n * forward_macs("resnet18", 32) for n in seen]
    assert cost["multiply_adds"] == sum(e["train_macs"] for e in epochs)
    assert cost["relative"] == pytest.approx(cost["multiply_adds"] / reference_macs())
    assert cost["eval_multiply_adds_per_image"] == forward_macs("resnet18", 32)
    assert f"{cost['relative']:.2f} times the 128 px recipe's" in report
    assert "| full | 16 |" in report and "leak-free" in report and "](curves.png)" in report
    for png in ("curves.png", "confusion.png", "predictions.png"):
        assert (finished_run / png).read_bytes()[:4] == b"\x89PNG"


def test_an_existing_run_is_not_overwritten(finished_run: Path, tiny: Path) -> None:
    flags = tiny_flags(tiny, finished_run.parent, finished_run.name)
    with pytest.raises(FileExistsError, match="--resume"):
        fit(load_config(None, flags))


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "resnet_scratch", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def flag_list(flags: dict[str, str]) -> list[str]:
    return [part for key, value in flags.items() for part in (f"--{key}", value)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights_and_metrics(tiny: Path, tmp_path: Path) -> None:
    epochs = 3
    whole = cli("train", *flag_list(tiny_flags(tiny, tmp_path, "whole", epochs)))
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    killed = cli("train", *flag_list(tiny_flags(tiny, tmp_path, "killed", epochs)))
    state = tmp_path / "killed" / "state.json"
    deadline = time.time() + 300
    while not (state.is_file() and json.loads(state.read_text())["epoch"] == 1):
        assert killed.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)  # somewhere in the second epoch
    killed.wait()
    assert json.loads(state.read_text())["epoch"] == 1
    resumed = cli("train", "--resume", str(tmp_path / "killed"))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    a, _ = load_model_file(tmp_path / "whole" / "last.safetensors")
    b, _ = load_model_file(tmp_path / "killed" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keys = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    lines = [
        [{k: json.loads(line)[k] for k in keys} for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
        for r in ("whole", "killed")
    ]
    assert lines[0] == lines[1] and len(lines[0]) == epochs
    results = [json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("whole", "killed")]
    assert results[0]["test"] == results[1]["test"]


def test_a_run_killed_before_its_config_was_written_starts_again_in_place(tiny: Path, tmp_path: Path) -> None:
    # An experiment killed just after taking the folder leaves only .lock; resuming it read the missing
    # config.json and stopped the experiment with FileNotFoundError.
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / ".lock").write_text("1\n")
    fit(load_config(None, tiny_flags(tiny, tmp_path, "early", epochs=1)), resume=True)
    assert (tmp_path / "early" / "metrics.json").is_file()


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    epochs_started = {"n": 0}
    real_epoch = train_module.train_one_epoch

    def counting_epoch(*args, **kwargs):
        epochs_started["n"] += 1
        return real_epoch(*args, **kwargs)

    class Poisoned(CrossEntropy):
        def of_logits(self, logits, target):
            loss = super().of_logits(logits, target)
            return loss * float("nan") if epochs_started["n"] >= 2 else loss

    class PoisonedStudy(Study):
        def loss(self, config, classes, extra):
            return Poisoned(config.label_smoothing, config.aux_weight)

    monkeypatch.setattr(train_module, "train_one_epoch", counting_epoch)
    with pytest.raises(TrainingDiverged, match=r"epoch 2: the loss became nan at batch 1.*last.safetensors"):
        fit(load_config(None, tiny_flags(tiny, tmp_path, "nan", epochs=3)), study=PoisonedStudy())
    _, meta = load_model_file(tmp_path / "nan" / "last.safetensors")
    assert meta["epoch"] == 1
    state, _ = load_model_file(tmp_path / "nan" / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_evaluate_command(finished_run: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    assert (
        main(
            ["evaluate", "--checkpoint", str(finished_run / "best.safetensors"), "--data", str(tiny), "--out", str(out)]
        )
        == 0
    )
    results = json.loads((out / "metrics.json").read_text())
    stored = json.loads((finished_run / "metrics.json").read_text())
    assert results["test"]["accuracy"] == stored["test"]["accuracy"]
    assert (out / "confusion.png").is_file() and "Testing (full): accuracy" in capsys.readouterr().out


def test_evaluate_bad_inputs_are_one_line_errors(finished_run: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    other = make_folder(tmp_path / "other", {"Training": {"x": 2, "y": 2}, "Testing": {"x": 1, "y": 1}})
    not_weights = tmp_path / "notes.safetensors"
    not_weights.write_text("hello")
    cases = [
        (["--checkpoint", str(tmp_path / "missing.safetensors"), "--data", str(tiny)], "does not exist"),
        (["--checkpoint", str(not_weights), "--data", str(tiny)], "not a safetensors checkpoint"),
        (
            ["--checkpoint", str(finished_run / "best.safetensors"), "--data", str(other)],
            "class folder 'x' is none of the checkpoint's classes",
        ),
    ]
    for args, message in cases:
        assert main(["evaluate", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert pytest.importorskip("re").search(message, err), err


def test_train_command_errors_exit_2(tiny: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(tiny), "--runs-dir", str(tmp_path), "--lr", "-1"]) == 2
    assert "lr = -1.0: must be positive" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny), "--runs-dir", str(tmp_path), "--colour", "blue"]) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err


def test_a_relative_weak_folder_lies_inside_external(tmp_path: Path) -> None:
    external = tmp_path / "external"
    assert weak_folder(Config(external=str(external), weak_tumour="br35h-tumour")) == external / "br35h-tumour"
    assert weak_folder(Config(external=str(external), weak_tumour=str(tmp_path / "x"))) == tmp_path / "x"
    assert weak_folder(Config(external=str(external))) is None
    assert weak_folder(Config(external=None, weak_tumour="br35h-tumour")) == Path("br35h-tumour")
    args = parser().parse_args(["train", "--weak-tumour", "br35h-tumour"])  # as the README's weak-label run
    with_weak = load_config("main_cpu", flags_given(args))
    assert weak_folder(with_weak) == Path(with_weak.external) / "br35h-tumour"


def test_a_missing_weak_folder_is_a_one_line_error_that_says_how_to_go_without(tiny: Path, tmp_path: Path, capsys):
    flags = tiny_flags(tiny, tmp_path, "weak") | {"external": str(tmp_path / "nowhere"), "weak_tumour": "br35h-tumour"}
    assert main(["train", *flag_list(flags)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert str(tmp_path / "nowhere" / "br35h-tumour") in err and "--weak-tumour none" in err


def test_predict_command(finished_run: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    checkpoint = str(finished_run / "best.safetensors")
    image = tiny / "Testing" / "a" / "a_000.jpg"
    assert main(["predict", "--checkpoint", checkpoint, str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count("%") == 4
    assert main(["predict", "--checkpoint", checkpoint, "--json", str(tiny / "Testing")]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # JSON Lines, as each is done
    assert len(results) == 16
    for r in results:
        assert r["class"] in "abcd" and abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["class"] == max(r["probabilities"], key=r["probabilities"].get)
    out = tmp_path / "why.png"
    assert main(["predict", "--checkpoint", checkpoint, str(image), "--explain", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_predict_bad_inputs_are_one_line_errors(finished_run: Path, tmp_path: Path, capsys) -> None:
    text = tmp_path / "scan.jpg"
    text.write_text("not an image")
    cases = [
        ([str(finished_run / "best.safetensors"), str(text)], "scan.jpg: not a readable image"),
        ([str(finished_run / "best.safetensors"), str(tmp_path / "nowhere.jpg")], "does not exist"),
        ([str(tmp_path / "none.safetensors"), str(text)], "does not exist"),
    ]
    for (checkpoint, image), message in cases:
        assert main(["predict", "--checkpoint", checkpoint, image]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_report_has_grad_cam_overlays(finished_run: Path) -> None:
    assert (finished_run / "gradcam.png").read_bytes()[:4] == b"\x89PNG"
    assert "](gradcam.png)" in (finished_run / "report.md").read_text()


def test_one_cycle_schedule_warms_up_and_anneals_per_batch(tiny: Path, tmp_path: Path) -> None:
    flags = tiny_flags(tiny, tmp_path, "onecycle", epochs=3) | {"schedule": "onecycle", "lr": "0.05"}
    run = fit(load_config(None, flags))
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(0.05 / 25)  # OneCycleLR's starting point: max_lr / div_factor
    assert lrs[1] > lrs[0] and max(lrs) <= 0.05  # rising through the warm-up (30% of the steps)
    with pytest.raises(ConfigError, match="schedule"):
        load_config(None, {"schedule": "cosine"})


def test_inference_uses_the_checkpoints_normalisation(tiny: Path, tmp_path: Path, capsys) -> None:
    """A checkpoint records its mean and std; predict must normalise with those, not ImageNet's."""
    from resnet_scratch.checkpoint import checkpoint_metadata, model_from_checkpoint, save_model
    from resnet_scratch.data.folder import decode
    from resnet_scratch.data.transforms import center_crop, eval_resize, fit_to
    from resnet_scratch.models import build

    torch.manual_seed(0)
    model = build("resnet18", num_classes=4).eval()  # untrained: moderate logits, nothing saturates
    image = str(tiny / "Testing" / "a" / "a_000.jpg")
    outputs = []
    for stats in (((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.1, 0.2, 0.3), (0.5, 0.5, 0.5))):
        checkpoint = tmp_path / f"{stats[0][0]}.safetensors"
        save_model(checkpoint, model, checkpoint_metadata("resnet18", list("abcd"), 32, {}, *stats))
        assert (
            main(["predict", "--checkpoint", str(checkpoint), "--json", "--device", "cpu", "--bf16", "false", image])
            == 0
        )
        outputs.append(json.loads(capsys.readouterr().out)["probabilities"])
    assert outputs[0] != outputs[1]
    loaded, _ = model_from_checkpoint(checkpoint)
    pixels = torch.from_numpy(fit_to(decode(Path(image)), eval_resize(32), eval_resize(32))).permute(2, 0, 1).float()
    x = (center_crop(pixels, 32) / 255 - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)) / 0.5
    with torch.no_grad():
        expected = loaded(x[None]).softmax(1)[0]
    assert max(abs(outputs[1][c] - float(p)) for c, p in zip("abcd", expected)) < 1e-4


def test_progress_writes_to_the_stdout_of_the_moment(capsys) -> None:
    import contextlib
    import io

    from resnet_scratch.runtime import Progress

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        progress = Progress(1, 1, 2)
        progress.update(2, 0.5, 0.75, 16)
    assert "epoch 1/1 [2/2] loss 0.5000 acc 0.7500" in buffer.getvalue() and capsys.readouterr().out == ""


def test_a_run_records_its_normalisation_and_predict_follows_it(tiny: Path, tmp_path: Path) -> None:
    """Trained with per-image equalisation, grey input, GIN and RandConv: the checkpoint records the
    preprocessing (not the training-only augmentations), and a Predictor loaded from it applies it."""
    from resnet_scratch.data.transforms import eval_transform
    from resnet_scratch.predictor import Predictor

    flags = tiny_flags(tiny, tmp_path, "intensity", epochs=1)
    flags |= {"normalize": "equalize", "grey": "true", "gin": "0.5", "randconv": "0.5"}
    run = fit(load_config(None, flags))
    _, meta = load_model_file(run / "best.safetensors")
    assert (meta["normalize"], meta["grey"]) == ("equalize", True)
    predictor = Predictor.load(run / "best.safetensors", device="cpu")
    images = torch.randint(0, 256, (2, 3, 37, 37), dtype=torch.uint8)
    expected = eval_transform(images, 32, normalize="equalize", grey=True)
    assert torch.allclose(predictor.prep.batch(images, torch.arange(2)).float(), expected, atol=1e-5)
