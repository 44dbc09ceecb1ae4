"""Every experiment script end to end at its tiny scale (a few steps on generated images), so none
can rot; and the experiment runner's bookkeeping: reuse of finished runs, mean +- std, the table."""

import importlib.util
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from resnet_scratch.config import Config, load_config, read_toml, recipe_path, to_dict
from resnet_scratch.evaluate import Results, evaluation_lines
from resnet_scratch.experiment import Arm, find_run, recorded_seeds, settings_hash, settings_of
from resnet_scratch.experiment_cli import base_config, experiment_args
from resnet_scratch.experiment_pages import results_table, table_columns, training_argv
from resnet_scratch.experiment_stats import mean_std
from resnet_scratch.studies.brain_mri import HELD_OUT, BrainMRI, weak_folder

from conftest import make_folder

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
SCRIPTS = {  # script: (seeds, arm labels it must report)
    "compare_models": (1, ["VGG16", "InceptionV3", "ResNet50"]),
    "ablate_skip": (
        2,
        ["plain-18", "plain-34", "residual-18 (B)", "residual-34 (B)", "residual-18 (A)", "residual-34 (A)"],
    ),
    "ablate_dropout": (1, ["ResNet-18 p=0", "ResNet-18 p=0.5", "VGG16 p=0", "VGG16 p=0.5"]),
    "external_validity": (
        1,
        [
            "recipe",
            "photometric",
            "head crop",
            "weak labels",
            "all three",
            "per-image std",
            "equalize",
            "GIN",
            "RandConv",
            "std + photometric",
            "location-scale",
        ],
    ),
    "intensity_strength": (
        1,
        [
            "neither",
            "GIN: paper",
            "GIN: milder",
            "GIN: mildest",
            "RandConv: paper",
            "RandConv: milder",
            "RandConv: mildest",
        ],
    ),
    "residual_responses": (2, ["plain-18", "plain-34", "residual-18 (B)", "residual-34 (B)"]),
    "time_to_accuracy": (
        1,
        [
            "128 px recipe",
            "12 epochs",
            "64 px",
            "per-image std",
            "probe",
            "fixed-crop probe",
            "fixed-crop probe at 22 epochs",
            "fixed-crop probe at 22 epochs + EMA",
            "fixed-crop probe at 22 epochs + zero-init residual",
            "fixed-crop probe at 22 epochs in colour",
            "fixed-crop probe at 22 epochs with the reference's crops",
            "fixed-crop probe at 22 epochs + progressive resizing",
            "fixed-crop probe at 22 epochs on 96 px images",
        ],
    ),
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """A four-class dataset, and an external root like ../shared/data/external."""
    root = tmp_path_factory.mktemp("data")
    dataset = make_folder(
        root / "mri", {"Training": {c: 5 for c in CLASSES}, "Testing": {c: 2 for c in CLASSES}}, size=(40, 40)
    )
    external = make_folder(
        root / "external", {"sartaj": {"glioma": 3, "pituitary": 2}, "br35h-tumour": {"tumour": 6}}, size=(52, 44)
    )
    return dataset, external


def argv_for(name: str, data: tuple[Path, Path], folder: Path) -> list[str]:
    dataset, external = data
    return [
        "--scale",
        "tiny",
        "--seeds",
        str(SCRIPTS[name][0]),
        "--data",
        str(dataset),
        "--out",
        str(folder / "out"),
        "--runs-dir",
        str(folder / "runs"),
        "--cache-dir",
        str(folder / "cache"),
        "--device",
        "cpu",
        "--external",
        str(external) if name in ("external_validity", "intensity_strength") else "none",
    ]


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> dict[str, Path]:
    """Each script run once at tiny scale: its folder (out/, runs/). VGG16's checkpoints (about 2 GB a
    run) are removed at the end of the module."""
    folders = {}
    for name in SCRIPTS:
        folder = tmp_path_factory.mktemp(name)
        load_script(name).main(argv_for(name, data, folder))
        folders[name] = folder
    yield folders
    for folder in folders.values():
        shutil.rmtree(folder / "runs", ignore_errors=True)


@pytest.mark.parametrize("name", SCRIPTS)
def test_experiment_runs_at_tiny_scale_and_reuses_its_runs(name: str, data, finished, capsys) -> None:
    seeds, labels = SCRIPTS[name]
    out = finished[name] / "out"
    argv = argv_for(name, data, finished[name])
    record = json.loads((out / "results.json").read_text())
    assert [arm["label"] for arm in record["arms"]] == labels
    assert record["command"] == f"python experiments/{name}.py " + " ".join(argv)  # no spaces in the tmp paths
    for arm in record["arms"]:
        assert arm["finished"] + arm["diverged"] == seeds
        for seed in arm["seeds"]:
            assert "diverged" in seed or 0 <= seed["test_accuracy"] <= 1
        if arm["finished"]:
            assert len(arm["test_accuracy"]["values"]) == arm["finished"]
            assert set(arm["recall"]) == set(CLASSES)
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


def test_a_page_is_never_rewritten_from_fewer_runs_than_it_holds(tmp_path: Path) -> None:
    # --summarize-only with the runs elsewhere, and no record of them to reuse, used to rewrite the
    # committed page from nothing: every number on it gone.
    import argparse

    from resnet_scratch.experiment_cli import output_dir

    out = tmp_path / "out"
    out.mkdir()
    settings = {"model": "resnet18", "lr": 0.05}
    (out / "results.json").write_text(json.dumps({"arms": [{"label": "a", "finished": 3, "settings": settings}]}))
    args = argparse.Namespace(out=out, scale="cpu", runs_dir=tmp_path / "elsewhere")
    with pytest.raises(SystemExit, match="not overwriting"):
        output_dir("x", args, [{"label": "a", "finished": 0, "settings": settings}])
    assert output_dir("x", args, [{"label": "a", "finished": 3, "settings": settings}]) == out


def test_the_skip_ablation_remakes_its_page_from_the_record_where_the_runs_are_gone(data, finished, tmp_path) -> None:
    # A checkout has no runs/: the page (new words, new figures) is remade from the seeds results.json records.
    copy = tmp_path / "out"
    shutil.copytree(finished["ablate_skip"] / "out", copy)
    before = json.loads((copy / "results.json").read_text())
    argv = argv_for("ablate_skip", data, finished["ablate_skip"])
    argv[argv.index("--runs-dir") + 1] = str(tmp_path / "elsewhere")
    argv[argv.index("--out") + 1] = str(copy)
    load_script("ablate_skip").main(argv + ["--summarize-only"])
    after = json.loads((copy / "results.json").read_text())
    values = lambda record: [arm["test_accuracy"] for arm in record["arms"]]  # noqa: E731
    assert values(after) == values(before) and all(arm["finished"] for arm in after["arms"])
    assert after["extra"]["grad_norms_trained"] == before["extra"]["grad_norms_trained"]
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())  # nothing trained


def test_the_ablations_measure_training_like_validation_and_judge_the_paper(finished) -> None:
    skip = json.loads((finished["ablate_skip"] / "out" / "results.json").read_text())
    assert all("train_eval_accuracy" in arm for arm in skip["arms"] if arm["finished"])
    assert any(note.startswith("Half 1, degradation") for note in skip["notes"])
    assert {"grad_norms_at_init", "grad_norms_trained"} <= set(skip["extra"])
    dropout = json.loads((finished["ablate_dropout"] / "out" / "results.json").read_text())
    settings = dropout["arms"][0]["settings"]
    assert settings["train_fraction"] == 0.10 and settings["train_eval"]
    # dropout is the only regulariser left on
    assert not settings["augment"] and settings["weight_decay"] == 0 and settings["label_smoothing"] == 0
    assert any(note.startswith("ResNet-18, all ") for note in dropout["notes"])


def test_external_validity_scores_br35h_on_the_half_no_arm_trains_on(finished) -> None:
    record = json.loads((finished["external_validity"] / "out" / "results.json").read_text())
    rows = {row["label"]: row for row in record["extra"]["external"]}
    images = {row["br35h_images"] for row in rows.values()}
    assert len(images) == 1 and 0 < images.pop() < 6  # the same held-out half for every arm
    assert "br35h_all_sensitivity" in rows["recipe"] and "br35h_all_sensitivity" not in rows["weak labels"]
    assert rows["recipe"]["sartaj_images"] == 5
    page = (finished["external_validity"] / "out" / "README.md").read_text()
    assert "Goals of the first round (mean of the seeds)" in page and "Goals of the second round" in page
    assert "only the arm / only the recipe" in page and "on the model's features" in page
    assert "| per-image std | 0 |" in page  # its paired row, over seed 0
    second = {arm["label"]: arm["settings"] for arm in record["arms"]}
    assert second["per-image std"]["normalize"] == "image" and second["GIN"]["gin"] > 0
    probe = next(s for s in record["arms"][5]["seeds"] if s["seed"] == 0)["collection_probe"]
    assert 0 <= probe["features"] <= 1 and 0 <= probe["pixels"] <= 1 and probe["images"] > 0
    reports = {
        run["label"]: (finished["external_validity"] / "runs" / run["seeds"][0]["run"] / "report.md").read_text()
        for run in record["arms"]
    }
    assert "trained on half of br35h-tumour" in reports["weak labels"]  # its report says which slices it saw
    assert "weakly labelled images from half of br35h-tumour" in reports["weak labels"]
    assert "trained on half of" not in reports["recipe"] and "(never trained on)" in reports["recipe"]
    held_out = {"images": 3, "accuracy": None, "recall": {}, "tumour_sensitivity": 0.5, "tumour_images": 3}
    held_out |= {"specificity": None, "scored_only": HELD_OUT}
    line = f"br35h-tumour: 3 images ({HELD_OUT}); tumour sensitivity 0.5000 of 3"
    assert evaluation_lines(Results(32, external={"br35h-tumour": held_out}), BrainMRI()) == [
        line
    ]  # and so does the line it prints


def test_flip_tta_rescores_the_main_jobs_own_checkpoints(data, finished, tmp_path: Path) -> None:
    # No run is trained for it: the main job's chosen checkpoints, scored without and with flips.
    folder = finished["time_to_accuracy"]
    record = json.loads((folder / "out" / "results.json").read_text())
    main = next(arm for arm in record["arms"] if arm["label"] == load_script("time_to_accuracy").MAIN_JOB)
    flip = record["extra"]["flip_at_test"]
    assert [s["run"] for s in flip["seeds"]] == [s["run"] for s in main["seeds"]]
    for was, now in zip(main["seeds"], flip["seeds"], strict=True):
        # scored again without flips, the checkpoint gives what the run itself reported: the pairing holds
        assert now["without"]["test_accuracy"] == was["test_accuracy"]
        assert now["without"]["leak_free_accuracy"] == was["leak_free_accuracy"]
        testing = 8  # the fixture's Testing images
        changed = round(testing * (now["with"]["test_accuracy"] - now["without"]["test_accuracy"]))
        assert now["fixed"] - now["broken"] == changed
        scored = json.loads((folder / "runs" / now["run"] / "evaluation-flip" / "metrics.json").read_text())
        assert scored["tta_flip"] and scored["test"]["accuracy"] == now["with"]["test_accuracy"]
    assert "| change (paired) |" in (folder / "out" / "README.md").read_text()
    # Where the runs are gone, the page keeps the recorded seeds.
    copy = tmp_path / "out"
    shutil.copytree(folder / "out", copy)
    argv = argv_for("time_to_accuracy", data, folder)
    argv[argv.index("--runs-dir") + 1] = str(tmp_path / "elsewhere")
    argv[argv.index("--out") + 1] = str(copy)
    load_script("time_to_accuracy").main(argv + ["--summarize-only"])
    assert json.loads((copy / "results.json").read_text())["extra"]["flip_at_test"] == flip


def test_weak_label_arms_find_br35h_under_a_relative_external_folder() -> None:
    arms = load_script("external_validity").arms_for(Config(external="ext"), Path("ext"))
    weak = {weak_folder(arm.config) for arm in arms if arm.config.weak_tumour}
    assert weak == {Path("ext", "br35h-tumour").absolute()}


def test_grad_norms_at_init_are_finite_and_positive(data, tmp_path: Path) -> None:
    script = load_script("ablate_skip")
    base = Config(data=str(data[0]), image_size=32, cache_dir=str(tmp_path / "cache"))
    arms = [Arm("plain-18", replace(base, skip=False)), Arm("residual-18 (B)", base)]
    norms = script.grad_norms(arms, [0, 1])
    assert list(norms["plain-18"]) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    for stages in norms.values():
        for stat in stages.values():
            assert len(stat["values"]) == 2 and all(math.isfinite(v) and v > 0 for v in stat["values"])


def test_settings_hash_ignores_only_bookkeeping() -> None:
    base = Config()
    same = Config(name="other", runs_dir="elsewhere", seed=3, cache_dir="/tmp/c", external=None)
    assert settings_hash(base) == settings_hash(same)
    assert settings_hash(base) != settings_hash(Config(lr=0.5))
    assert settings_hash(base) != settings_hash(Config(skip=False))


def test_a_run_named_under_another_hash_is_found_by_its_settings(tmp_path: Path) -> None:
    config = replace(Config(lr=0.05), seed=1, name="resnet18-00000000-seed1")
    old = tmp_path / "resnet18-deadbeef-seed1"  # e.g. hashed before a setting with a default was added
    old.mkdir()
    saved = {k: v for k, v in config.__dict__.items() if k != "train_eval"}
    (old / "config.json").write_text(json.dumps({"config": saved}))
    assert find_run(config, tmp_path) == old
    assert find_run(replace(config, lr=0.1), tmp_path) == tmp_path / config.name


def test_another_experiments_record_lends_its_seeds_to_arms_of_the_same_settings(tmp_path: Path) -> None:
    # The time-to-accuracy page's 128 px recipe is the external-validity page's recipe: one set of runs.
    seed = {"run": "resnet18-00000000-seed2", "seed": 2, "test_accuracy": 0.97}
    arms = [{"label": "recipe", "settings": to_dict(Config()), "seeds": [seed]}]
    arms.append({"label": "slow", "settings": to_dict(Config(lr=0.01)), "seeds": [seed | {"seed": 0}]})
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"arms": arms}))
    mine = [Arm("128 px recipe", Config()), Arm("12 epochs", Config(epochs=12))]
    assert recorded_seeds(path, mine) == {}  # by label only: no arm here is called "recipe"
    assert recorded_seeds(path, mine, any_label=True) == {("128 px recipe", 2): seed}


def test_mean_std_uses_the_sample_deviation() -> None:
    stat = mean_std([0.9, 0.92, 0.94])
    assert stat["mean"] == pytest.approx(0.92)
    assert stat["std"] == pytest.approx(0.02)
    assert mean_std([0.5])["std"] == 0.0


def test_results_table_marks_diverged_arms() -> None:
    lines = results_table([{"label": "broken", "finished": 0, "diverged": 3, "seeds": []}])
    rows = [line for line in lines if line.startswith("| broken |")]
    assert len(rows) == 2 and "0 of 3 (diverged)" in rows[0]  # the training table's seeds column says why
    assert all(len(line.split("|")) <= 12 for line in lines if line)  # no table of 18 columns


def test_results_page_and_tutorial_are_built_from_the_results(finished, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(finished["ablate_skip"] / "out", docs / "results" / "ablate_skip")
    # One setting over seeds, as docs/results/resnet18_cpu_onecycle keeps it: seed0/, seed1/ run folders.
    runs = finished["ablate_skip"] / "runs"
    residual = sorted(p.parent for p in runs.rglob("metrics.json") if "resnet18" in str(p))
    assert len(residual) >= 2
    for k, run in enumerate(residual[:2]):
        shutil.copytree(
            run, docs / "results" / "one_setting" / f"seed{k}", ignore=shutil.ignore_patterns("*.safetensors")
        )
    page = load_script("make_results_page").build_page(docs / "results", docs / "results.md")
    assert "## Seeds: one_setting" in page and "| **mean +- std** |" in page
    assert "## Skip connections: residual vs plain networks" in page
    assert "| residual-34 (A) |" in page and "](results/ablate_skip/curves.png)" in page
    tutorial = load_script("make_tutorial").main(docs).read_text()
    assert "| residual-34 (B) |" in tutorial and "](tutorial/figure4.png)" in tutorial
    assert "Half 1, degradation" in tutorial  # the verdicts, as the ablation's page gives them
    assert "python experiments/residual_responses.py --scale cpu" in tutorial  # no results yet: says how
    assert "1 x 512 x 28 x 28" in tutorial  # the live bottleneck's output
    assert "class BasicBlock(nn.Module):" in tutorial and "def zero_init_residual(" in tutorial  # learn/
    for png in ("blocks.png", "sanity.png", "figure4.png"):
        assert (docs / "tutorial" / png).stat().st_size > 1000


def dropout_arm(label: str, runs: list[tuple[int, float, float]]) -> dict:
    """A finished arm of the dropout ablation: (seed, training rows right, validation right) per run."""
    seeds = [
        {"seed": k, "curves": {"train_eval_accuracy": [0.5, t], "val_accuracy": [0.5, v]}, "leak_free_accuracy": v}
        for k, t, v in runs
    ]
    return {"label": label, "finished": len(seeds), "seeds": seeds}


def test_dropout_is_judged_on_fitted_seeds_and_above_the_noise() -> None:
    notes = load_script("ablate_dropout").gap_notes(
        [
            # ResNet-18: a gap of ~18 either way, changes within the noise (about 2.3 points at 18% error)
            dropout_arm("ResNet-18 p=0", [(0, 1.0, 0.82), (1, 1.0, 0.81), (2, 1.0, 0.82)]),
            dropout_arm("ResNet-18 p=0.5", [(0, 1.0, 0.83), (1, 1.0, 0.80), (2, 1.0, 0.83)]),
            # VGG16: seed 2 with dropout never fits (its gap of 2 points is not regularisation); the two
            # fitted seeds narrow by 10 points
            dropout_arm("VGG16 p=0", [(0, 0.98, 0.78), (1, 0.97, 0.77), (2, 0.98, 0.78)]),
            dropout_arm("VGG16 p=0.5", [(0, 0.98, 0.88), (1, 0.97, 0.87), (2, 0.80, 0.78)]),
        ]
    )
    resnet, vgg = notes
    assert "no measurable effect of dropout" in resnet and "Not fitted" not in resnet
    assert "seed 2 p=0.5 (80.0%)" in vgg and "In the 2 seed(s) where both runs fitted" in vgg
    assert "dropout narrowed the gap beyond the noise in 2 of 2 fitted seed(s)" in vgg and "by 10.0 points" in vgg
    one = load_script("ablate_dropout").gap_notes(
        [
            dropout_arm("VGG16 p=0", [(0, 0.98, 0.78), (1, 0.90, 0.77)]),
            dropout_arm("VGG16 p=0.5", [(0, 0.99, 0.69), (1, 0.97, 0.77)]),
        ]
    )[0]
    assert "seed 1 p=0 (90.0%)" in one and "widened the gap beyond the noise in 1 of 1" in one
    assert "from one seed only: weak evidence" in one


def test_weak_label_caveat_gives_sartajs_sampling_noise_once_sartaj_is_scored() -> None:
    caveat = load_script("external_validity").weak_label_caveat
    assert caveat([{"label": "recipe"}]) == []
    (text,) = caveat([{"label": "recipe", "sartaj_images": 269}, {"label": "weak labels", "sartaj_images": 269}])
    # two standard errors of the difference of two accuracies near 85% on 269 slices: 200 * sqrt(2 * .15 * .85 / 269)
    assert "With 269 slices" in text and "differ by 6.2 points" in text
    assert "no longer a collection they never saw" in text


def test_a_run_that_did_not_score_every_held_out_slice_is_refused() -> None:
    # the page's set must be a subset of what every run scored, or the arms are compared on different slices
    script = load_script("external_validity")
    external = {"br35h-tumour": {"predictions": {"tumour/a.jpg": "glioma", "tumour/c.jpg": "notumor"}}}
    held_out = {"tumour/a.jpg", "tumour/c.jpg"}
    assert script.held_out_sensitivity(external, held_out) == {
        "value": 0.5,
        "images": 2,
        "files": script.files_hash(held_out),
    }
    assert script.held_out_sensitivity({}, {"tumour/a.jpg"}) is None
    with pytest.raises(ValueError, match="lack 1 held-out files, e.g. tumour/b.jpg"):
        script.held_out_sensitivity(external, {"tumour/a.jpg", "tumour/b.jpg"})


def recorded_copy(finished: dict[str, Path], tmp_path: Path) -> tuple[Path, dict]:
    """The tiny external-validity page's results.json, copied into tmp_path/out: a checkout without runs."""
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "results.json"
    shutil.copy(finished["external_validity"] / "out" / "results.json", path)
    return path, json.loads(path.read_text())


def test_recorded_runs_are_reused_where_the_runs_are_gone(data, finished, tmp_path, capsys) -> None:
    # A fresh checkout has no runs/: an experiment used to train every run again, and --summarize-only
    # refused to remake the page. The seeds recorded in its results.json now stand in for their runs.
    path, before = recorded_copy(finished, tmp_path)
    capsys.readouterr()
    load_script("external_validity").main(argv_for("external_validity", data, tmp_path))
    printed = capsys.readouterr().out
    arms = len(SCRIPTS["external_validity"][1])
    assert "] training in" not in printed and printed.count("using the recorded numbers of") == arms
    after = json.loads(path.read_text())
    assert after["extra"] == before["extra"]
    assert [arm["seeds"] for arm in after["arms"]] == [arm["seeds"] for arm in before["arms"]]


def test_only_the_seeds_not_recorded_are_trained(data, finished, tmp_path, capsys) -> None:
    path, record = recorded_copy(finished, tmp_path)
    weak = next(arm for arm in record["arms"] if arm["label"] == "weak labels")
    weak["seeds"], weak["finished"] = [], 0
    record["arms"][0]["settings"]["epochs"] += 1  # the recipe's record is of other settings
    path.write_text(json.dumps(record))
    capsys.readouterr()
    load_script("external_validity").main(argv_for("external_validity", data, tmp_path))
    printed = capsys.readouterr().out
    assert "[recipe] " in printed and "records runs of other settings (epochs): not reused" in printed
    assert printed.count("using the recorded numbers of") == len(SCRIPTS["external_validity"][1]) - 2
    assert "[recipe seed 0] training in" in printed and "[weak labels seed 0] training in" in printed


def test_a_recorded_seed_scored_on_other_slices_is_refused(data, finished, tmp_path) -> None:
    path, record = recorded_copy(finished, tmp_path)
    record["arms"][1]["seeds"][0]["br35h_held_out"]["files"] = "0" * 16
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="photometric: .* was scored on other Br35H slices"):
        load_script("external_validity").main(argv_for("external_validity", data, tmp_path))


def test_goals_are_judged_on_all_seeds() -> None:
    rows = [{"label": "all three", "seeds": 1, "sartaj_accuracy": {"mean": 0.87}}]
    notes = load_script("external_validity").goal_notes
    assert notes(rows, 3) == ["- all three: Sartaj accuracy 87.00% (goal 85.0%: met so far, at 1 of 3 seeds)."]
    assert notes(rows, 1) == ["- all three: Sartaj accuracy 87.00% (goal 85.0%: met)."]


def test_each_arm_is_set_against_the_recipe_on_the_seeds_both_ran() -> None:
    def stat(*values: float) -> dict:
        return {"values": list(values)}

    recipe = {
        "label": "recipe",
        "seeds": 3,
        "test_accuracy": stat(0.98, 0.98, 0.97),
        "sartaj_accuracy": stat(0.8, 0.8, 0.9),
    }
    recipe |= {"sartaj_recall": {"pituitary": stat(0.5, 0.5, 0.6)}, "br35h_sensitivity": stat(0.3, 0.4, 0.5)}
    crop = {"label": "head crop", "seeds": 2, "test_accuracy": stat(0.97, 0.97), "sartaj_accuracy": stat(0.85, 0.81)}
    crop |= {"sartaj_recall": {"pituitary": stat(0.7, 0.6)}}
    lines = load_script("external_validity").differences_table([recipe, crop])
    assert lines[2] == (
        "| arm | Testing (full) | Sartaj accuracy | Sartaj pituitary recall | Br35H held out | Br35H, all 703 | seeds |"
    )
    # seeds 0 and 1 only: the recipe's seed 2 (Sartaj 90%) would flip the Sartaj sign
    assert lines[-1] == "| head crop | -1.0 | +3.0 | +15.0 | - | - | 2 |"


def test_a_template_slot_without_a_value_or_a_value_without_a_slot_is_an_error(tmp_path: Path) -> None:
    from resnet_scratch.experiment_pages import fill, read_phrases

    assert fill("{{a}} and {{b}}", {"a": 1, "b": "two"}) == "1 and two"
    with pytest.raises(ValueError, match=r"without a value: \['b'\]"):
        fill("{{a}} and {{b}}", {"a": 1})
    with pytest.raises(ValueError, match=r"without a slot: \['c'\]"):
        fill("{{a}}", {"a": 1, "c": 3})
    with pytest.raises(ValueError, match=r"page.md: \{\{ Gap \}\} is not a slot"):
        fill("{{a}} and {{ Gap }}", {"a": 1}, "page.md")
    with pytest.raises(ValueError, match=r"\{\{b\}\} is not a slot .* or was never filled"):
        fill("{{a}}", {"a": "a phrase with {{b}} unfilled"})
    path = tmp_path / "phrases.md"
    text = "<!-- what fills it -->\n<!-- phrase: one -->\nfirst {{x}}\n<!-- phrase: empty -->\n"
    path.write_text(text + "<!-- phrase: two -->\n second\n")
    assert read_phrases(path) == {"one": "first {{x}}", "empty": "", "two": " second"}
    path.write_text(text + "<!-- phrase: one -->\nagain\n")
    with pytest.raises(ValueError, match=r"given twice \['one'\]"):
        read_phrases(path)
    path.write_text(text + "<!-- phrase: Two -->\nmisspelt marker\n")
    with pytest.raises(ValueError, match="malformed markers"):
        read_phrases(path)


def test_the_tutorial_template_and_its_phrases_parse() -> None:
    from resnet_scratch.experiment_pages import PLACEHOLDER, read_phrases, read_template

    templates = Path(__file__).resolve().parents[1] / "experiments" / "templates"
    assert "{{" not in read_template(templates / "tutorial.md").split("\n")[0]  # the comment is not on the page
    assert {"further_residual", "further_plain", "no_results"} <= set(read_phrases(templates / "tutorial_phrases.md"))
    assert "basic_block_source" in PLACEHOLDER.findall(read_template(templates / "tutorial.md"))


def test_the_strength_of_a_lever_that_is_off_does_not_name_a_run() -> None:
    from resnet_scratch.experiment import settings_hash, settings_of

    assert settings_hash(Config(gin_blend=0.3)) == settings_hash(Config())  # GIN off: its blend does nothing
    assert settings_hash(Config(gin=0.5, gin_blend=0.3)) != settings_hash(Config(gin=0.5))
    assert "resize_until" not in settings_of(Config()) and "resize_until" in settings_of(Config(min_image_size=96))


def test_a_change_counts_only_where_three_seeds_agree_beyond_the_spread() -> None:
    verdict = load_script("time_to_accuracy").lever_verdict
    assert verdict([0.01, 0.02], 0.001) == "too few seeds"
    assert verdict([0.01, 0.02, -0.001], 0.001) == "no"  # one seed disagrees
    assert verdict([0.002, 0.002, 0.002], 0.003) == "no"  # smaller than the other arm's spread
    assert verdict([0.01, 0.02, 0.005], 0.003) == "yes: better"
    assert verdict([-0.01, -0.02, -0.005], 0.003) == "yes: worse"


def lever_row(label: str, cost: float, tests: dict[int, float]) -> dict:
    """An arm_rows row whose every figure is `tests` (by seed number)."""
    keys = ("test_accuracy", "leak_free_accuracy", "sartaj", "br35h-tumour")
    row = {"label": label, "cost": cost, "seeds": len(tests)} | {key: mean_std(list(tests.values())) for key in keys}
    return row | {"by_seed": {seed: dict.fromkeys(keys, value) for seed, value in tests.items()}}


def test_each_arm_is_set_against_the_arm_it_changes_seed_by_seed() -> None:
    script = load_script("time_to_accuracy")
    reference = lever_row("128 px recipe", 1.0, {0: 0.97, 1: 0.975, 2: 0.98})
    arms = [lever_row("64 px", 0.25, {0: 0.98, 1: 0.985}), lever_row("EMA", 1.0, {0: 0.99, 1: 0.99, 2: 0.99})]
    arms += [lever_row("probe", 0.14, {0: 0.96, 1: 0.96, 2: 0.96})]
    arms += [lever_row("12 epochs", 0.55, {0: 0.975, 1: 0.97, 2: 0.98})]
    arms += [lever_row("grey", 0.9, {1: 0.975, 2: 0.98})]  # seeds 1 and 2 only: paired by number, not place
    lines = script.lever_lines([reference, *arms])
    assert "| 64 px | 128 px recipe | 0.25 | +1.00 | +1.00 | +1.00 | +1.00 | too few seeds | 2 |" in lines[0]
    # bold: beyond the seed spread
    assert (
        "| EMA | 128 px recipe | 1.00 | **+1.50** | **+1.50** | **+1.50** | **+1.50** | yes: better | 3 |" in lines[0]
    )
    assert (
        "| probe | 128 px recipe | 0.14 | **-1.50** | **-1.50** | **-1.50** | **-1.50** | yes: worse | 3 |" in lines[0]
    )
    assert "| grey | 128 px recipe | 0.90 | +0.00 | +0.00 | +0.00 | +0.00 | too few seeds | 2 |" in lines[0]
    assert lines[0].index("probe") < lines[0].index("64 px") < lines[0].index("EMA")  # cheapest first
    # the cheapest arm not shown worse, at 3 seeds and below the reference's cost: not the probe, not EMA
    assert lines[1].startswith(
        "The cheapest arm not shown worse than the 128 px recipe on Testing is 12 epochs, at 0.55"
    )
    assert "+0.00 points over 3 seeds, within the seed spread" in lines[1]
    assert script.lever_lines([lever_row("probe", 0.14, {0: 0.96})]) == []  # no reference to set against


def test_a_lever_tried_on_the_22_epoch_probe_is_set_against_that_probe() -> None:
    script = load_script("time_to_accuracy")
    reference = lever_row("128 px recipe", 1.0, {0: 0.97, 1: 0.975, 2: 0.98})
    main = lever_row(script.FIXED22, 0.25, {0: 0.98, 1: 0.985, 2: 0.99})
    ema = lever_row(script.LEVERS_ON_PROBE[0], 0.25, {0: 0.985, 1: 0.99, 2: 0.985})
    table = script.lever_lines([reference, main, ema])[0]
    assert f"| {script.LEVERS_ON_PROBE[0]} | {script.FIXED22} | 0.25 | +0.17 | +0.17 |" in table
    assert f"| {script.FIXED22} | 128 px recipe | 0.25 | **+1.00** |" in table


def with_external(row: dict, value: float) -> dict:
    """The row with Sartaj and Br35H at `value` for every seed."""
    for name in ("sartaj", "br35h-tumour"):
        row[name] = mean_std([value] * len(row["by_seed"]))
        for seed in row["by_seed"].values():
            seed[name] = value
    return row


def test_the_main_job_is_the_cheapest_arm_level_with_the_most_accurate() -> None:
    script = load_script("time_to_accuracy")
    reference = lever_row("128 px recipe", 1.0, {0: 0.97, 1: 0.975, 2: 0.98})
    main = lever_row(script.FIXED22, 0.25, {0: 0.98, 1: 0.985, 2: 0.985})
    # the most accurate on Testing, but worse on both external sets beyond the spread: no candidate
    costly = with_external(lever_row("costly arm", 0.56, {0: 0.99, 1: 0.99, 2: 0.99}), 0.5)
    # better on Testing by its mean, but within the main job's spread: a lever that is not kept
    ema = lever_row(script.LEVERS_ON_PROBE[0], 0.25, {0: 0.99, 1: 0.99, 2: 0.985})
    # level with the main job within the spread, at four times its cost: not worth the compute
    level = lever_row("EMA", 1.0, {0: 0.985, 1: 0.99, 2: 0.985})
    # cheaper still, but worse than the most accurate beyond the spread: named, not picked
    worse = lever_row("fixed-crop probe", 0.14, {0: 0.975, 1: 0.98, 2: 0.98})
    lines = script.choice_lines([reference, main, costly, ema, level, worse], 3)
    assert (
        "No candidate meets the cheap goal" in lines[0] and "The most accurate candidate on Testing is EMA." in lines[0]
    )
    assert 'worse than it on Testing beyond the seed spread: "128 px recipe", "fixed-crop probe".' in lines[0]
    assert f"That is {script.FIXED22}: 98.33 ± 0.29% on Testing at a cost of 0.25." in lines[0]
    assert "changes Testing by +0.83 points (better, beyond the seed spread)" in lines[0]
    assert lines[1].startswith(f"`make train` still trains {script.MAIN_JOB}")
    # a lever that beats the main job beyond its spread is picked, and the page says make train lags
    ema = lever_row(script.LEVERS_ON_PROBE[0], 0.25, {0: 0.995, 1: 1.0, 2: 1.0})
    lines = script.choice_lines([reference, main, ema], 3)
    assert f"That is {script.LEVERS_ON_PROBE[0]}:" in lines[0] and "Some candidates meet the cheap goal" in lines[0]
    assert lines[1].startswith(f"`make train` still trains {script.MAIN_JOB}")
    # where the pick is the arm that make train trains, the page says so
    picked = lever_row(script.MAIN_JOB, 0.56, {0: 0.995, 1: 1.0, 2: 1.0})
    lines = script.choice_lines([reference, main, picked], 3)
    assert (
        f"That is {script.MAIN_JOB}:" in lines[0]
        and lines[1] == "`make train` trains this arm (recipes/main_cpu.toml)."
    )
    assert script.choice_lines([main], 3) == []  # no reference to set against


def test_an_arm_that_meets_the_cheap_goal_beats_a_costlier_more_accurate_one() -> None:
    script = load_script("time_to_accuracy")
    reference = lever_row("128 px recipe", 1.0, {0: 0.97, 1: 0.975, 2: 0.98})
    cheap = lever_row("fixed-crop probe", 0.14, {0: 0.985, 1: 0.99, 2: 0.985})
    costly = lever_row("EMA", 1.0, {0: 0.999, 1: 0.999, 2: 0.998})
    lines = script.choice_lines([reference, cheap, costly], 3)
    assert (
        "That is fixed-crop probe:" in lines[0]
        and "The most accurate candidate on Testing is fixed-crop probe." in lines[0]
    )


def test_a_cheaper_lever_on_the_22_epoch_probe_needs_only_to_lose_nothing() -> None:
    script = load_script("time_to_accuracy")
    reference = lever_row("128 px recipe", 1.0, {0: 0.97, 1: 0.975, 2: 0.98})
    main = lever_row(script.FIXED22, 0.25, {0: 0.98, 1: 0.985, 2: 0.985})
    resized = f"{script.FIXED22} + progressive resizing"
    # a little lower on average, within the spread, at less cost: picked
    lines = script.choice_lines([reference, main, lever_row(resized, 0.22, {0: 0.985, 1: 0.98, 2: 0.98})], 3)
    assert f"That is {resized}:" in lines[0]
    # lower beyond the spread: no candidate, however cheap
    lines = script.choice_lines([reference, main, lever_row(resized, 0.22, {0: 0.97, 1: 0.975, 2: 0.975})], 3)
    assert f"That is {script.FIXED22}:" in lines[0] and f"That is {resized}" not in lines[0]


def test_a_lever_that_loses_external_accuracy_against_the_arm_it_changes_is_no_candidate() -> None:
    script = load_script("time_to_accuracy")
    reference = with_external(lever_row("128 px recipe", 1.0, {0: 0.97, 1: 0.975, 2: 0.98}), 0.4)
    probe = with_external(lever_row(script.FIXED22, 0.25, {0: 0.98, 1: 0.985, 2: 0.985}), 0.6)
    # better on Testing beyond the spread, above the reference outside, but below the probe it changes
    larger = with_external(lever_row(f"{script.FIXED22} on 96 px images", 0.56, {0: 0.99, 1: 0.99, 2: 0.99}), 0.5)
    lines = script.choice_lines([reference, probe, larger], 3)
    assert f"That is {script.FIXED22}:" in lines[0]
    assert 'These lose Sartaj or Br35H against the arm they change: "FCP-22 on 96 px images".' in lines[0]
    # of equal cost and within the spread on Testing: not a candidate, however it does outside
    colour = with_external(lever_row(f"{script.FIXED22} in colour", 0.25, {0: 0.985, 1: 0.985, 2: 0.98}), 0.7)
    lines = script.choice_lines([reference, probe, colour], 3)
    assert 'nor cost less: "FCP-22 in colour".' in lines[0] and f"That is {script.FIXED22}:" in lines[0]
    # losing outside only against the reference still rules an arm out, and says against what
    ema = with_external(lever_row(f"{script.FIXED22} + EMA", 0.25, {0: 0.99, 1: 0.995, 2: 0.99}), 0.3)
    lines = script.choice_lines([reference, probe, ema], 3)
    assert 'against the 128 px recipe, beyond the seed spread: "FCP-22 + EMA".' in lines[0]
    # a lever whose base arm has no record yet stands nowhere, without an error
    lines = script.choice_lines([reference, ema], 3)
    assert "That is 128 px recipe:" in lines[0] and "FCP-22" not in lines[0]


def test_make_train_trains_the_main_job_arm() -> None:
    """recipes/main_cpu.toml, as `make train` loads it, holds the settings of the page's main job arm,
    which the page builds on the 128 px recipe."""
    script = load_script("time_to_accuracy")
    args = experiment_args(script.__doc__, ["--scale", "cpu"])
    arms = {arm.label: arm for arm in script.arms_for(base_config(args, read_toml(recipe_path("resnet18_128px"))))}
    assert settings_of(load_config("main_cpu")) == settings_of(arms[script.MAIN_JOB].config)


def test_the_introduction_reads_its_settings_from_the_arms() -> None:
    """The page's introduction names the crops, sizes and lever count that the arms really use, and each
    lever on the fixed-crop probe at 22 epochs changes exactly one setting of it."""
    script = load_script("time_to_accuracy")
    args = experiment_args(script.__doc__, ["--scale", "cpu"])
    arms = script.arms_for(base_config(args, read_toml(recipe_path("resnet18_128px"))))
    values = script.about_values(arms)
    assert (values["crops"], values["mild"], values["small"], values["larger"]) == (
        "35% to 100%",
        "60% to 100%",
        48,
        "2.25",
    )
    assert values["levers"] == len(script.LEVERS_ON_PROBE) == 6
    assert (values["n_small"], values["n_large"]) == (8, 14)  # 48 px, then 64 px, in steps of 16 px
    main = settings_of(next(arm.config for arm in arms if arm.label == script.FIXED22))
    # settings that make one lever together
    together = [{"crop_scale_min", "crop_scale_max", "crop_ratio_max"}, {"min_image_size", "resize_until"}]
    for arm in arms:
        if arm.label in script.LEVERS_ON_PROBE:
            changed = {k for k, v in settings_of(arm.config).items() if main.get(k) != v}
            assert changed and (len(changed) == 1 or any(changed <= lever for lever in together)), (arm.label, changed)
            assert script.short(arm.label).startswith("FCP-22 ")


def test_the_cheap_goal_counts_only_arms_with_every_seed() -> None:
    script = load_script("time_to_accuracy")
    lucky = lever_row("64 px", 0.25, {0: 0.995})  # one seed: no 3-seed mean, whatever its figure
    ema = lever_row("EMA", 1.0, {0: 0.99, 1: 0.99, 2: 0.99})  # too costly for the cheap goal
    assert script.goal_notes([lucky, ema], 3)[0].startswith("No arm at a cost of at most 0.25 reaches both 98.5%")
    assert script.goal_notes([lucky], 1)[0].endswith("(means of 1 seed): 64 px.")


def test_the_page_names_the_arms_that_have_not_run() -> None:
    script = load_script("time_to_accuracy")
    summaries = [{"label": "96 px", "finished": 0}, {"label": "64 px", "finished": 3}, {"label": "grey", "finished": 0}]
    (line,) = script.not_run_lines(summaries)
    assert line.endswith('remain unmeasured: "96 px", "grey".') and "64 px" not in line
    assert script.not_run_lines(summaries[1:2]) == []


def test_the_page_shows_the_command_that_trains_every_arm() -> None:
    argv = ["--scale", "cpu", "--arms", "per-image std", "--seeds", "3", "--summarize-only", "--arms=GIN"]
    assert training_argv(argv) == ["--scale", "cpu", "--seeds", "3"]


def test_the_page_explains_the_eval_mode_training_column_only_where_it_is_shown() -> None:
    arm = {"label": "a", "settings": {}, "finished": 0, "diverged": 0}
    with_eval = arm | {"train_eval_accuracy": {"mean": 0.9, "std": 0.0}}
    for arms, shown in (([arm], False), ([arm, with_eval], True)):
        assert ("train acc (eval)" in table_columns(arms)) == shown
        assert ("train acc (eval)" in "\n".join(results_table(arms))) == shown


def test_strength_tuning_never_scores_br35h(finished) -> None:
    """intensity_strength picks on validation and Sartaj: Br35H is in neither its record nor its runs."""
    folder = finished["intensity_strength"]
    files = [folder / "out" / "results.json", folder / "out" / "README.md", *(folder / "runs").glob("*/metrics.json")]
    assert len(files) > 2 and not any("br35h-tumour" in f.read_text() for f in files)  # the set's folder name
