"""Every experiment script end to end at its tiny scale (a few steps on generated images), so none
can rot; and the experiment runner's bookkeeping: reuse of finished runs, mean +- std, the table."""

import importlib.util
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from resnet_scratch.config import Config
from resnet_scratch.experiment import Arm, mean_std, results_table, settings_hash

from conftest import make_folder

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = {  # script: (seeds, arm labels it must report)
    "compare_models": (1, ["VGG16", "InceptionV3", "ResNet50"]),
    "ablate_skip": (2, ["plain-18", "plain-34", "residual-18", "residual-34"]),
    "ablate_dropout": (1, ["ResNet-18 p=0", "ResNet-18 p=0.2", "ResNet-18 p=0.5", "VGG16 no dropout", "VGG16 p=0.5"]),
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def four_class_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    classes = ("glioma", "meningioma", "notumor", "pituitary")
    return make_folder(root, {"Training": {c: 5 for c in classes}, "Testing": {c: 2 for c in classes}}, size=(40, 40))


@pytest.mark.parametrize("name", SCRIPTS)
def test_experiment_runs_at_tiny_scale(name: str, four_class_data: Path, tmp_path: Path, capsys) -> None:
    seeds, labels = SCRIPTS[name]
    out = tmp_path / "out"
    argv = [
        "--scale",
        "tiny",
        "--seeds",
        str(seeds),
        "--data",
        str(four_class_data),
        "--out",
        str(out),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--device",
        "cpu",
        "--external",
        "none",
    ]
    load_script(name).main(argv)
    record = json.loads((out / "results.json").read_text())
    assert [arm["label"] for arm in record["arms"]] == labels
    assert record["command"] == f"python experiments/{name}.py " + " ".join(argv)
    for arm in record["arms"]:
        assert arm["finished"] + arm["diverged"] == seeds
        for seed in arm["seeds"]:
            assert "diverged" in seed or 0 <= seed["test_accuracy"] <= 1
        if arm["finished"]:
            assert len(arm["test_accuracy"]["values"]) == arm["finished"]
            assert set(arm["recall"]) == {"glioma", "meningioma", "notumor", "pituitary"}
            assert arm["params"] > 0 and arm["macs"] > 0
    readme = (out / "README.md").read_text()
    for figure in record["figures"]:
        assert (out / figure["file"]).stat().st_size > 1000
        assert f"]({figure['file']})" in readme
    for label in labels:
        assert f"| {label} |" in readme

    # A second invocation trains nothing: every run is found finished and reused.
    capsys.readouterr()
    load_script(name).main(argv)
    printed = capsys.readouterr().out
    assert "training in" not in printed and printed.count("reusing") == len(labels) * seeds
    shutil.rmtree(tmp_path / "runs")  # VGG16's checkpoints: about 2 GB a run


def test_grad_norms_at_init_are_finite_and_positive(four_class_data: Path, tmp_path: Path) -> None:
    script = load_script("ablate_skip")
    base = Config(data=str(four_class_data), image_size=32, cache_dir=str(tmp_path / "cache"))
    arms = [Arm("plain-18", replace(base, skip=False)), Arm("residual-18", base)]
    norms = script.grad_norms_at_init(arms, [0, 1], batch=8)
    assert list(norms["plain-18"]) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    for stages in norms.values():
        for stat in stages.values():
            assert len(stat["values"]) == 2 and all(math.isfinite(v) and v > 0 for v in stat["values"])


def test_settings_hash_ignores_only_bookkeeping() -> None:
    base = Config()
    same = Config(name="other", runs_dir="elsewhere", seed=3, cache_dir="/tmp/c")
    assert settings_hash(base) == settings_hash(same)
    assert settings_hash(base) != settings_hash(Config(lr=0.5))
    assert settings_hash(base) != settings_hash(Config(skip=False))


def test_mean_std_uses_the_sample_deviation() -> None:
    stat = mean_std([0.9, 0.92, 0.94])
    assert stat["mean"] == pytest.approx(0.92)
    assert stat["std"] == pytest.approx(0.02)
    assert mean_std([0.5])["std"] == 0.0


def test_results_table_marks_diverged_arms() -> None:
    lines = results_table([{"label": "broken", "finished": 0, "diverged": 3, "seeds": []}])
    assert "0 of 3 (diverged)" in lines[-1]


def test_results_page_and_tutorial_are_built_from_the_results(four_class_data: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    argv = [
        "--scale",
        "tiny",
        "--seeds",
        "2",
        "--data",
        str(four_class_data),
        "--out",
        str(docs / "results" / "ablate_skip"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--device",
        "cpu",
        "--external",
        "none",
    ]
    load_script("ablate_skip").main(argv)
    # One setting over seeds, as docs/results/resnet18_cpu_onecycle keeps it: seed0/, seed1/ run folders.
    residual = sorted(p.parent for p in (tmp_path / "runs").rglob("metrics.json") if "resnet18" in str(p))
    assert len(residual) >= 2
    for k, run in enumerate(residual[:2]):
        shutil.copytree(
            run, docs / "results" / "one_setting" / f"seed{k}", ignore=shutil.ignore_patterns("*.safetensors")
        )
    page = load_script("make_results_page").build_page(docs / "results", docs / "results.md")
    assert "## Seeds: one_setting" in page and "| **mean +- std** |" in page
    assert "## Skip connections: residual vs plain networks" in page
    assert "| residual-34 |" in page and "](results/ablate_skip/curves.png)" in page
    tutorial = load_script("make_tutorial").main(docs).read_text()
    assert "| residual-34 |" in tutorial and "](results/ablate_skip/grad_norms.png)" in tutorial
    assert "python experiments/ablate_dropout.py --scale cpu" in tutorial  # no results yet: says how to make them
    assert "1 x 512 x 28 x 28" in tutorial  # the live bottleneck's output
    assert (docs / "tutorial" / "crops.png").stat().st_size > 1000
    shutil.rmtree(tmp_path / "runs")
