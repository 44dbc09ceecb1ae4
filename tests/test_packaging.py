"""The package where people install it (issue 27, first part): its console commands, LICENSE and
py.typed, an import without fcntl, predict in a pipeline, file modes, help texts and run names."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_scratch.__main__ import main
from resnet_scratch.checkpoint import checkpoint_metadata, save_model
from resnet_scratch.models import MODELS, build

from conftest import make_folder

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_console_commands_license_and_type_marker_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {
        "resnet-scratch": "resnet_scratch.__main__:main",
        "weights-convert": "weights_convert.__main__:main",
    }
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "resnet_scratch" / "py.typed").is_file() and (ROOT / "weights_convert" / "py.typed").is_file()
    data = project["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["resnet_scratch"] and "templates/*.md" in data["resnet_scratch"]


def test_the_installed_command_runs_the_same_verbs() -> None:
    command = Path(sys.executable).parent / "resnet-scratch"  # beside this Python, activated or not
    assert command.is_file(), "pip install -e . installs the resnet-scratch command"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: resnet-scratch" in done.stdout
    assert all(verb in done.stdout for verb in ("train", "evaluate", "predict", "audit"))


def test_the_package_imports_and_locks_without_fcntl(tmp_path: Path) -> None:
    code = (
        "import os, sys, pathlib; sys.modules['fcntl'] = None\n"
        "import resnet_scratch\n"
        "from resnet_scratch.checkpoint import RunLock\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "(d / '.lock').write_text(str(os.getppid()))  # a living process holds it\n"
        "try:\n    RunLock(d); print('taken')\nexcept FileExistsError:\n    print('refused')\n"
        "(d / '.lock').write_text('99999999')  # a holder that is gone\n"
        "lock = RunLock(d); print('taken'); lock.release(); print(repr((d / '.lock').read_text()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.split() == ["refused", "taken", "''"], done.stderr[-1500:]


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipe")
    folder = make_folder(root / "data", {"set": {"glioma": 30, "notumor": 30}}, size=(40, 40)) / "set"
    torch.manual_seed(0)
    checkpoint = root / "m.safetensors"
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    save_model(
        checkpoint,
        build("resnet18", num_classes=4),
        checkpoint_metadata("resnet18", classes, 32, {}, (0,) * 3, (1,) * 3),
    )
    return checkpoint, folder


def test_predict_ends_quietly_when_its_reader_closes_the_pipe(model_and_images, tmp_path: Path) -> None:
    checkpoint, folder = model_and_images
    explain = tmp_path / "why.png"
    command = [sys.executable, "-m", "resnet_scratch", "predict", "--checkpoint", str(checkpoint), "--json"]
    command += ["--batch-size", "1", "--explain", str(explain), str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    json.loads(process.stdout.readline())  # as `| head -1` reads one line, then goes away
    process.stdout.close()
    stderr = process.communicate(timeout=300)[1].decode()
    assert process.returncode == 0 and "Broken pipe" not in stderr, stderr[-1500:]
    assert explain.is_file()  # the explanation is still written


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_checkpoints_follow_the_umask_like_every_other_file(tmp_path: Path, mask: int) -> None:
    code = (
        "import sys, torch; from resnet_scratch.checkpoint import save_model\n"
        "save_model(sys.argv[1], torch.nn.Linear(1, 1), {'arch': 'none'}); open(sys.argv[2], 'w').close()"
    )
    files = [tmp_path / "m.safetensors", tmp_path / "plain.txt"]
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, files)],
        preexec_fn=lambda: os.umask(mask),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert [f.stat().st_mode & 0o777 for f in files] == [0o666 & ~mask] * 2  # as open() makes a file


def test_every_evaluate_and_predict_argument_has_help(capsys) -> None:
    import argparse

    from resnet_scratch.__main__ import parser

    verbs = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for verb in ("evaluate", "predict", "export"):
        for action in verbs[verb]._actions:
            assert action.help, f"{verb} {action.option_strings or action.dest} has no help"
        assert main([verb, "--help"]) == 0
        text = capsys.readouterr().out
        assert "PosixPath" not in text and "best.safetensors" in text, text
        assert verb != "predict" or "image files, or folders of them" in text


def test_a_plain_second_train_gets_a_new_timestamped_name(tmp_path: Path, capsys) -> None:
    data = make_folder(tmp_path / "data", {"Training": {c: 6 for c in "abcd"}, "Testing": {c: 2 for c in "abcd"}})
    flags = ["train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--image-size", "32"]
    flags += ["--epochs", "1", "--batch-size", "8", "--external", "none"]
    assert main(flags) == 0 and main(flags) == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names[0] == "run" and names[1].startswith("run-") and len(names) == 2
    assert f"already holds a run: this one is {names[1]}" in capsys.readouterr().out


def test_the_public_api_lists_builds_and_loads(model_and_images) -> None:
    import resnet_scratch

    checkpoint, folder = model_and_images
    assert resnet_scratch.list_models() == list(resnet_scratch.MODELS) and "resnet50" in resnet_scratch.list_models()
    predictor = resnet_scratch.load_checkpoint(str(checkpoint), device="cpu", bf16=False)
    assert predictor.classes == ["glioma", "meningioma", "notumor", "pituitary"] and predictor.prep.size == 32
    own = resnet_scratch.build("resnet18", weights=checkpoint)  # no num_classes: the checkpoint's head
    assert own.fc.out_features == 4
    assert torch.equal(own.fc.weight, predictor.model.fc.weight.cpu())


def test_torch_hub_loads_from_a_checkout() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    entries = {name for name in dir(hub) if callable(getattr(hub, name)) and not name.startswith("_")}
    assert entries == set(MODELS)  # torch.hub's rule for an entry point: every model, nothing else
    model = torch.hub.load(str(ROOT), "resnet50", source="local", num_classes=4, trust_repo=True)
    assert model.fc.out_features == 4


def source_tree(to: Path) -> Path:
    """The files a clean clone holds (git ls-files), copied: building there leaves the checkout as it was."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the files of a clean clone are unknown")
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)
    return to


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built as a wheel and installed, not editable, into a new virtual environment that
    sees the torch already installed (--system-site-packages). Returns the environment's bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = source_tree(tmp / "source")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("resnet_scratch-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    assert done.returncode == 0
    return venv / "bin"


def run_installed(bin_folder: Path, args: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    """A command of the installed wheel, from a folder outside the checkout, with no data setting."""
    env = {k: v for k, v in os.environ.items() if k not in ("RESNET_SCRATCH_DATA", "RESNET_SCRATCH_EXTERNAL")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env | extra_env, timeout=600)


@pytest.mark.slow
def test_the_wheel_installed_elsewhere_trains_and_predicts(installed_wheel: Path, tmp_path: Path) -> None:
    command = str(installed_wheel / "resnet-scratch")
    where = run_installed(
        installed_wheel,
        [str(installed_wheel / "python"), "-c", "import resnet_scratch as r; print(r.__file__)"],
        tmp_path,
    )
    assert where.stdout.startswith(str(installed_wheel.parent)), where  # the wheel's copy, not the checkout's
    shown = run_installed(installed_wheel, [command, "--help"], tmp_path)
    assert shown.returncode == 0 and "usage: resnet-scratch" in shown.stdout
    data = make_folder(tmp_path / "data", {"Training": {c: 12 for c in "abcd"}, "Testing": {c: 3 for c in "abcd"}})
    train = [command, "train", "--config", "main_cpu", "--data", str(data), "--epochs", "1", "--image-size", "32"]
    train += ["--min-image-size", "none"]  # the recipe's progressive resizing starts above 32 px
    done = run_installed(installed_wheel, train + ["--name", "first"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "runs" / "first"
    assert json.loads((run / "config.json").read_text())["config"]["lr"] == 0.1  # the packaged recipe's
    image = next((data / "Testing" / "b").iterdir())
    predicted = run_installed(
        installed_wheel,
        [command, "predict", "--checkpoint", str(run / "best.safetensors"), str(image), "--json"],
        tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout.splitlines()[0])["class"] in "abcd"


@pytest.mark.slow
def test_the_wheel_without_data_says_how_to_get_it(installed_wheel: Path, tmp_path: Path) -> None:
    command = str(installed_wheel / "resnet-scratch")
    done = run_installed(installed_wheel, [command, "train", "--epochs", "1"], tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-1500:]
    assert "--data" in done.stderr and "RESNET_SCRATCH_DATA" in done.stderr and "Kaggle" in done.stderr
    assert not (tmp_path / "runs").exists()  # a run that cannot start leaves no folder
    audit = run_installed(installed_wheel, [command, "audit"], tmp_path)
    assert audit.returncode == 2 and "audit FOLDER" in audit.stderr and "Kaggle" in audit.stderr
    shown = run_installed(installed_wheel, [command, "train", "--help"], tmp_path).stdout
    assert "site-packages" not in shown and "--data" in shown  # never a default inside the installed package
    code = "from resnet_scratch.config import Config; print(Config().data, Config().external)"
    python = str(installed_wheel / "python")
    printed = run_installed(installed_wheel, [python, "-c", code], tmp_path, RESNET_SCRATCH_DATA=str(tmp_path / "mine"))
    assert printed.stdout.split() == [str(tmp_path / "mine"), "None"], printed.stderr[-1500:]


def test_a_checkout_finds_its_data_beside_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RESNET_SCRATCH_DATA", "RESNET_SCRATCH_EXTERNAL")}
    code = "from resnet_scratch.config import Config; print(Config().data); print(Config().external)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    shared = ROOT.parent / "shared" / "data"
    assert done.stdout.splitlines() == [str(shared / "brain-tumor-mri"), str(shared / "external")], done.stderr


@pytest.mark.parametrize("fmt", ["torch-export", "torchscript"])
def test_an_export_loads_without_this_package_and_gives_the_same_logits(model_and_images, tmp_path, fmt) -> None:
    checkpoint, _ = model_and_images
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(checkpoint), "--format", fmt, "--out", str(out)]) == 0
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    load = "torch.export.load(p).module()" if fmt == "torch-export" else "torch.jit.load(p)"
    code = (  # a fresh interpreter that cannot import resnet_scratch: only torch reads the file
        "import sys, torch; sys.modules['resnet_scratch'] = None; sys.modules['weights_convert'] = None\n"
        f"p = sys.argv[1]; m = {load}\n"
        "torch.save(m(torch.load(sys.argv[2])), sys.argv[3])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True, text=True, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    from resnet_scratch.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=0, atol=1e-5)
    about = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert about["classes"] == ["glioma", "meningioma", "notumor", "pituitary"] and about["input_size"] == 32


def test_a_packaged_recipe_is_found_by_name_and_a_run_repeats_from_its_config_json(tmp_path: Path, capsys) -> None:
    from resnet_scratch.config import ConfigError, load_config, recipe_path

    assert load_config("main_cpu") == load_config(recipe_path("main_cpu"))
    assert load_config("main_cpu").epochs == 22 and load_config("main_cpu").image_size == 64
    assert load_config("resnet18_128px").image_size == 128
    with pytest.raises(ConfigError, match=r"no such file, nor a recipe of the package \(main_cpu, resnet18_128px\)"):
        load_config("main_gpu")
    data = make_folder(tmp_path / "data", {"Training": {c: 6 for c in "abcd"}, "Testing": {c: 2 for c in "abcd"}})
    flags = ["--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--image-size", "32", "--lr", "0.02"]
    assert main(["train", *flags, "--epochs", "1", "--batch-size", "8", "--external", "none", "--name", "first"]) == 0
    recorded = tmp_path / "runs" / "first" / "config.json"
    again = load_config(recorded, {"name": "again"})
    first = load_config(None, json.loads(recorded.read_text())["config"])
    assert again.lr == 0.02 and again.name == "again" and again.runs_dir == "runs"
    assert {k: v for k, v in vars(again).items() if k not in ("name", "runs_dir")} == {
        k: v for k, v in vars(first).items() if k not in ("name", "runs_dir")
    }


# 6. Logs people use: metrics.csv, curves.png after every epoch, TensorBoard when asked


def small_run_flags(tmp_path: Path, name: str, epochs: int) -> list[str]:
    data = make_folder(tmp_path / "data", {"Training": {c: 6 for c in "abcd"}, "Testing": {c: 2 for c in "abcd"}})
    flags = ["train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--image-size", "32"]
    return flags + ["--epochs", str(epochs), "--batch-size", "8", "--external", "none", "--name", name]


def test_curves_and_metrics_csv_are_there_while_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    from resnet_scratch import train as train_module

    seen = []

    def stop_in_epoch_2(folder, *rest):
        lines = (folder / "metrics.csv").read_text().splitlines()
        seen.append(((folder / "curves.png").read_bytes()[:4], lines[0].split(",")[0], len(lines)))
        raise KeyboardInterrupt  # killed before the run's end, where curves.png used to be drawn

    monkeypatch.setattr(train_module, "save_training_state", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(small_run_flags(tmp_path, "watched", 3))
    assert seen == [(b"\x89PNG", "epoch", 2)]  # the header and epoch 1, before the end of the run


class FakeWriter:
    """What the run asks of TensorBoard's SummaryWriter, recorded."""

    made: list["FakeWriter"] = []

    def __init__(self, folder: str) -> None:
        self.folder, self.scalars, self.closed = folder, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.scalars.append((tag, global_step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_tensorboard_gets_every_epoch_when_asked(tmp_path: Path, monkeypatch) -> None:
    import types

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    FakeWriter.made.clear()
    assert main([*small_run_flags(tmp_path, "board", 2), "--tensorboard"]) == 0
    (writer,) = FakeWriter.made
    assert writer.folder == str(tmp_path / "runs" / "board" / "tensorboard") and writer.closed
    assert ("val_accuracy", 1) in writer.scalars and ("val_accuracy", 2) in writer.scalars
    assert ("train_loss", 2) in writer.scalars and not any(tag == "epoch" for tag, _ in writer.scalars)
    FakeWriter.made.clear()
    assert main(small_run_flags(tmp_path, "quiet", 1)) == 0 and FakeWriter.made == []  # only when asked


def test_tensorboard_missing_is_one_line_and_the_run_goes_on(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails, as when not installed
    assert main([*small_run_flags(tmp_path, "plain", 1), "--tensorboard"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--tensorboard")]
    assert len(said) == 1 and "pip install tensorboard" in said[0] and "metrics.csv" in said[0]
    assert (tmp_path / "runs" / "plain" / "metrics.json").is_file()


def test_a_state_written_when_epochs_counted_from_0_is_refused(tmp_path: Path, capsys) -> None:
    assert main(small_run_flags(tmp_path, "old", 1)) == 0
    state = tmp_path / "runs" / "old" / "state.json"
    record = json.loads(state.read_text())
    del record["format"]
    state.write_text(json.dumps(record | {"epoch": 0}))
    assert main(["train", "--resume", str(tmp_path / "runs" / "old")]) == 2
    assert "counted epochs from 0" in capsys.readouterr().err


# The review's findings: each fix, tested


def test_a_missing_dataset_folder_says_how_and_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--runs-dir", str(runs), "--epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "RESNET_SCRATCH_DATA" in error and "Kaggle" in error
    assert not runs.exists()  # checked before the run folder is taken


def test_a_command_read_by_head_ends_quietly() -> None:
    command = [sys.executable, "-m", "resnet_scratch", "demo"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.readline()  # as `| head -1` reads one line, then goes away
    process.stdout.close()
    stderr = process.communicate(timeout=300)[1].decode()
    assert process.returncode == 0 and "Broken pipe" not in stderr, stderr[-1500:]


def test_weights_of_a_run_with_a_new_number_of_classes_warn(model_and_images) -> None:
    from resnet_scratch.pretrained import build as build_with_weights

    checkpoint, _ = model_and_images
    assert build_with_weights("resnet18", weights=checkpoint).fc.out_features == 4  # its own head
    with pytest.warns(UserWarning, match="trained on 4 classes .* num_classes=3 gives it a new, untrained head"):
        assert build_with_weights("resnet18", weights=checkpoint, num_classes=3).fc.out_features == 3


def test_a_locked_metrics_csv_does_not_stop_the_run(tmp_path: Path, monkeypatch, capsys) -> None:
    from resnet_scratch import run_folder

    real = run_folder.atomic_write_text

    def locked(path, text):
        if Path(path).name == "metrics.csv":  # open in a spreadsheet on Windows
            raise PermissionError(13, "Permission denied", str(path))
        real(path, text)

    monkeypatch.setattr(run_folder, "atomic_write_text", locked)
    assert main(small_run_flags(tmp_path, "locked", 1)) == 0
    out = capsys.readouterr().out
    assert "metrics.csv not updated (Permission denied); metrics.jsonl holds every epoch" in out
    assert "external sets: none given (--external FOLDER or $RESNET_SCRATCH_EXTERNAL)" in out


def test_an_installed_copy_inside_another_repository_records_no_commit(tmp_path: Path) -> None:
    project = tmp_path / "their_project"
    shutil.copytree(ROOT / "resnet_scratch", project / "venv" / "site" / "resnet_scratch")
    git = ["git", "-C", str(project), "-c", "user.name=x", "-c", "user.email=x@x"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "theirs"], check=True)
    env = {k: v for k, v in os.environ.items() if k != "RESNET_SCRATCH_COMMIT"}
    env["PYTHONPATH"] = str(project / "venv" / "site")
    code = "from resnet_scratch.runtime import git_commit; print(git_commit())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.stdout.strip() == "unknown", done.stderr[-1500:]


def test_under_torchrun_a_plain_train_keeps_its_name(tmp_path: Path, monkeypatch) -> None:
    from resnet_scratch import train as train_module

    names = []
    monkeypatch.setattr(train_module, "fit", lambda config, **_: names.append(config.name))
    (tmp_path / "runs" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "run" / "config.json").write_text("{}")
    flags = ["train", "--data", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    assert main(flags) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")  # every rank must choose the same name: rank 0 then refuses it
    assert main(flags) == 0
    assert names[0].startswith("run-") and names[1] == "run"
