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
    command = shutil.which("resnet-scratch")
    assert command is not None, "pip install -e . installs the resnet-scratch command"
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
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


def test_checkpoints_follow_the_umask_like_every_other_file(model_and_images) -> None:
    checkpoint, _ = model_and_images
    mask = os.umask(0o022)
    os.umask(mask)
    assert checkpoint.stat().st_mode & 0o777 == 0o666 & ~mask


def test_every_evaluate_and_predict_argument_has_help(capsys) -> None:
    for verb in ("evaluate", "predict"):
        assert main([verb, "--help"]) == 0
        text = capsys.readouterr().out
        assert "PosixPath" not in text and "best.safetensors" in text, text
    assert "image files, or folders of them" in text


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


def test_an_installed_copy_without_data_says_how_to_get_it(tmp_path: Path) -> None:
    site = tmp_path / "site"  # the package as a wheel installs it: no checkout, no ../shared beside it
    for package in ("resnet_scratch", "weights_convert"):
        shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("RESNET_SCRATCH_DATA", "RESNET_SCRATCH_EXTERNAL")}
    env["PYTHONPATH"] = str(site)
    run = [sys.executable, "-m", "resnet_scratch"]
    done = subprocess.run(run + ["train", "--epochs", "1"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-1500:]
    assert "--data" in done.stderr and "RESNET_SCRATCH_DATA" in done.stderr and "Kaggle" in done.stderr
    shown = subprocess.run(run + ["train", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert str(site) not in shown and "--data" in shown  # never a default inside the installed package
    with_env = env | {"RESNET_SCRATCH_DATA": str(tmp_path / "mine")}
    code = "from resnet_scratch.config import Config; print(Config().data, Config().external)"
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=with_env)
    assert printed.stdout.split() == [str(tmp_path / "mine"), "None"], printed.stderr[-1500:]


def test_a_checkout_finds_its_data_beside_it() -> None:
    from resnet_scratch.config import Config
    from resnet_scratch.data import dataset_root

    if "RESNET_SCRATCH_DATA" not in os.environ:
        assert dataset_root() == ROOT.parent / "shared" / "data" / "brain-tumor-mri"
        assert Config().data == str(dataset_root())


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
    assert load_config("main_cpu").epochs == 22 and load_config("main_cpu").image_size == 128
    with pytest.raises(ConfigError, match=r"no such file, nor a recipe of the package \(main_cpu\)"):
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
