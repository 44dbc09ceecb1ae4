"""Experiments: arms (labelled settings) x seeds, each run trained by fit(), summarised as mean +- std.

An experiment script (experiments/*.py) lists its arms and its scale presets; this module runs them
(and reuses runs and recorded seeds); experiment_stats.py holds the statistics and experiment_pages.py
writes docs/results/<experiment>/ with results.json (every number, per seed too), README.md (the
table, the command, commits and devices) and the plots. Nothing in those files is typed by hand.

Runs are stored as runs_dir/<model>-<settings hash>-seed<k>, named by what they train and not by the
experiment, so a run already finished with the same settings is reused (an experiment that crashed
restarts where it stopped, and two experiments that need the same run train it once); a run cut
short resumes from its last epoch.
"""

import hashlib
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .checkpoint import read_epochs
from .config import Config, load_config, to_dict
from .cost import relative_cost
from .experiment_stats import external_headline, mean_std, model_cost
from .files import atomic_write_text
from .runtime import TrainingDiverged
from .studies.brain_mri import BrainMRI
from .train import fit


def imagenet_if_present(model: str) -> str | None:
    """ "imagenet" when torchvision's file for `model` is already on this machine, else None
    (train from scratch): the GPU presets fine-tune where they can, and never download."""
    from weights_convert import local_imagenet_file

    return "imagenet" if local_imagenet_file(model) is not None else None


@dataclass(frozen=True)
class Arm:
    """One row of an experiment's table: a label and the settings its runs share (all but the seed)."""

    label: str
    config: Config


def model_config(base: Config, model: str, scale: str) -> Config:
    """The shared recipe adapted to one model: InceptionV3's input size (its auxiliary head needs
    299 px, so it trains only at GPU scale); a fifth of the learning rate for VGG16, which has no
    BatchNorm to steady a from-scratch rate, and for fine-tuning (docs/benchmarks.md says what was
    tried); ImageNet weights at GPU scale where present."""
    changes: dict[str, object] = {"model": model}
    lr = base.lr / 5 if model == "vgg16" else base.lr
    if model == "inception_v3":
        changes |= {"image_size": 299 if scale == "gpu" else 75, "aux_logits": scale == "gpu"}
    if scale == "gpu" and imagenet_if_present(model):
        changes["weights"] = "imagenet"
        lr /= 5
    return replace(base, lr=lr, **changes)


# Where files go and what is scored after training: not part of what a run is.
NOT_SETTINGS = ("name", "runs_dir", "seed", "cache_dir", "external")


# The strengths of levers that are off by default: while a lever is off they change nothing, so they do
# not tell runs apart (a new default strength must not orphan the runs made without the lever).
STRENGTHS = {
    "gin": ("gin_blend", "gin_depth"),
    "randconv": ("randconv_blend", "randconv_kernel"),
    "location_scale": ("location_scale_invert",),
    "min_image_size": ("resize_until",),
}


def settings_of(config: Config) -> dict[str, object]:
    """Everything a run's result depends on (not its name, folder or seed, nor the strength of a lever
    that is off)."""
    settings = {k: v for k, v in to_dict(config).items() if k not in NOT_SETTINGS}
    for lever, strengths in STRENGTHS.items():
        if not settings[lever]:
            for key in strengths:
                del settings[key]
    return settings


def settings_hash(config: Config) -> str:
    """8 hex digits naming settings_of(config)."""
    return hashlib.sha256(json.dumps(settings_of(config), sort_keys=True).encode()).hexdigest()[:8]


def find_run(config: Config, runs_dir: Path) -> Path:
    """The folder of this run: the one its name says if it exists, else a folder of the same model and
    seed whose config.json holds the same settings (named under an older hash, e.g. before a setting
    with a default was added), else the named one, to be trained."""
    named = runs_dir / config.name
    if named.is_dir():
        return named
    for folder in sorted(runs_dir.glob(f"{config.model}-*-seed{config.seed}")):
        try:
            saved = load_config(None, json.loads((folder / "config.json").read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if settings_of(saved) == settings_of(config) and saved.seed == config.seed:
            return folder
    return named


def seed_config(arm: Arm, seed: int, runs_dir: Path) -> Config:
    """The config of one seed of an arm, named after its run folder (find_run)."""
    config = replace(
        arm.config, seed=seed, runs_dir=str(runs_dir), name=f"{arm.config.model}-{settings_hash(arm.config)}-seed{seed}"
    )
    return replace(config, name=find_run(config, runs_dir).name)


def finished(run: Path) -> bool:
    """Whether a run folder holds a result: its metrics, or the reason it diverged."""
    return (run / "metrics.json").is_file() or (run / "diverged.txt").is_file()


def run_seed(arm: Arm, seed: int, runs_dir: Path, train: bool = True) -> Path:
    """Train (or reuse, or resume) one seed of an arm; returns its run folder (with train=False, the
    folder as it is, finished or not).

    A run that diverges leaves diverged.txt in its folder with the reason, and is reported, not retried.
    """
    config = seed_config(arm, seed, runs_dir)
    run = runs_dir / config.name
    if finished(run):
        print(f"[{arm.label} seed {seed}] reusing {run}", flush=True)
        return run
    if not train:
        print(f"[{arm.label} seed {seed}] not finished: left out", flush=True)
        return run
    print(f"\n[{arm.label} seed {seed}] training in {run}", flush=True)
    try:
        fit(
            config, resume=run.is_dir(), study=BrainMRI()
        )  # a run killed before its first commit starts again, in place
    except TrainingDiverged as e:
        atomic_write_text(run / "diverged.txt", f"{e}\n")
        print(f"[{arm.label} seed {seed}] diverged: {e}", flush=True)
    return run


def summarize_run(run: Path) -> dict[str, object]:
    """The numbers of one finished run: last-epoch training/validation figures (the paper's Table
    III), Testing on the best checkpoint (full split and leak-free subset), per-class recall, speed,
    and the per-epoch curves."""
    config = json.loads((run / "config.json").read_text())
    environment = config["environment"]
    device = environment.get("gpu", environment["device"])
    base = {
        "run": run.name,
        "seed": config["config"]["seed"],
        "commit": config["commit"],
        "device": device,
        "torch": environment["torch"],
    }
    if (run / "diverged.txt").is_file():
        return base | {"diverged": (run / "diverged.txt").read_text().strip()}
    epochs = read_epochs(run)
    results = json.loads((run / "metrics.json").read_text())
    last = epochs[-1]
    if "test_leak_free" not in results:
        raise ValueError(f"{run}: no leak-free Testing subset was scored; an experiment reports both")
    return base | {
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        **{key: last[key] for key in ("train_eval_accuracy", "train_eval_loss") if key in last},
        "best_epoch": results["best_epoch"],
        "best_val_accuracy": results["val_accuracy"],
        "test_accuracy": results["test"]["accuracy"],
        "leak_free_accuracy": results["test_leak_free"]["accuracy"],
        "test_macro_f1": results["test"]["macro_f1"],
        "recall": {c: v["recall"] for c, v in results["test"]["per_class"].items()},
        "leak_free_recall": {c: v["recall"] for c, v in results["test_leak_free"]["per_class"].items()},
        # medians: an epoch slowed by other work on the machine does not move them
        "seconds_per_epoch": float(np.median([e["seconds"] for e in epochs])),
        "training_seconds": float(sum(e["seconds"] for e in epochs)),
        "images_per_s": float(np.median([e["images_per_s"] for e in epochs])),
        "curves": {
            key: [e[key] for e in epochs]
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "train_eval_accuracy")
            if key in last
        },
        "external": {name: external_headline(r) for name, r in results.get("external", {}).items()},
        # training multiply-adds relative to the 128 px recipe's (cost.training_cost), where the run counted
        # them; runs made before the unit was named call that share "main_job"
        **({"cost": relative_cost(results["training_cost"])} if "training_cost" in results else {}),
    }


SCALAR_METRICS = (
    "best_epoch",
    "train_accuracy",
    "train_loss",
    "val_accuracy",
    "val_loss",
    "best_val_accuracy",
    "test_accuracy",
    "leak_free_accuracy",
    "test_macro_f1",
    "seconds_per_epoch",
    "images_per_s",
)


def recorded_arms(path: Path) -> dict[str, dict[str, object]]:
    """The arms of the results.json at `path`, by label (none where there is no such file)."""
    if not path.is_file():
        return {}
    return {arm["label"]: arm for arm in json.loads(path.read_text()).get("arms", [])}


def recorded_seeds(path: Path, arms: list[Arm], any_label: bool = False) -> dict[tuple[str, int], dict[str, object]]:
    """The seed summaries that the results.json at `path` records for arms of the same label and
    settings as `arms`, by (label, seed): runs trained in another runs_dir or on another machine (a
    fresh checkout has no runs/), whose numbers an experiment can reuse instead of training them again.
    With `any_label`, a recorded arm serves every arm of the same settings, whatever either is called:
    another experiment's record of the same runs."""
    seeds = {}
    for label, was in recorded_arms(path).items():
        if any_label:
            same = [arm for arm in arms if not settings_differences(was.get("settings", {}), to_dict(arm.config))]
        else:
            same = [arm for arm in arms if arm.label == label]
            differ = settings_differences(was.get("settings", {}), to_dict(same[0].config)) if same else []
            if differ:
                print(f"[{label}] {path} records runs of other settings ({', '.join(differ)}): not reused", flush=True)
                continue
        seeds |= {(arm.label, seed["seed"]): seed for arm in same for seed in was.get("seeds", [])}
    return seeds


def run_arms(
    arms: list[Arm],
    seeds: list[int],
    runs_dir: Path,
    train: bool = True,
    recorded: dict[tuple[str, int], dict[str, object]] | None = None,
    only: Collection[str] | None = None,
) -> list[dict[str, object]]:
    """Every arm at every seed, then each arm's summary. A finished run in runs_dir is reused, else the
    seed's `recorded` summary (recorded_seeds), else the run is trained (only the arms labelled in
    `only`, where given). Seed by seed, so that an experiment cut short has every arm at its first
    seeds rather than some arms at none."""
    labels = [arm.label for arm in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"arm labels must differ: {labels}")
    unknown = sorted(set(only or ()) - set(labels))
    if unknown:
        raise ValueError(f"no arm is labelled {', '.join(map(repr, unknown))}; the arms: {', '.join(labels)}")
    recorded = recorded or {}
    start = time.perf_counter()
    done: dict[str, list[dict[str, object]]] = {label: [] for label in labels}
    reused = 0
    for seed in seeds:
        for arm in arms:
            record = recorded.get((arm.label, seed))
            if record is not None and not finished(runs_dir / seed_config(arm, seed, runs_dir).name):
                print(f"[{arm.label} seed {seed}] using the recorded numbers of {record['run']}", flush=True)
                done[arm.label].append(record)
                reused += 1
                continue
            run = run_seed(arm, seed, runs_dir, train and (only is None or arm.label in only))
            if finished(run):
                done[arm.label].append(summarize_run(run))
    minutes = (time.perf_counter() - start) / 60
    print(f"\nall {len(arms) * len(seeds)} runs done in {minutes:.1f} min ({reused} from the record)", flush=True)
    return [summarize_arm(arm, done[arm.label]) for arm in arms]


def settings_differences(a: dict[str, object], b: dict[str, object]) -> list[str]:
    """The settings in which two arms' recorded settings differ (none: they train the same runs).
    Settings added since one was recorded take their defaults; where runs and files go does not count."""
    try:
        a, b = settings_of(load_config(None, a)), settings_of(load_config(None, b))
    except (ValueError, TypeError, KeyError):  # a setting since removed, or a value no longer valid
        return ["a setting no longer valid"]
    return sorted(key for key in a if a[key] != b.get(key))


def summarize_arm(arm: Arm, seeds: list[dict[str, object]]) -> dict[str, object]:
    """The arm's per-seed summaries (summarize_run) and their mean +- std."""
    done = [s for s in seeds if "diverged" not in s]
    summary: dict[str, object] = {
        "label": arm.label,
        "settings": to_dict(arm.config),
        **model_cost(arm.config),
        "seeds": seeds,
        "finished": len(done),
        "diverged": len(seeds) - len(done),
    }
    if done:
        summary |= {key: mean_std([s[key] for s in done]) for key in SCALAR_METRICS}
        summary |= {
            key: mean_std([s[key] for s in done])
            for key in ("train_eval_accuracy", "train_eval_loss", "cost")
            if all(key in s for s in done)
        }
        for key in ("recall", "leak_free_recall"):
            summary[key] = {c: mean_std([s[key][c] for s in done]) for c in done[0][key]}
        names = [name for name in done[0].get("external", {}) if all(name in s.get("external", {}) for s in done)]
        summary["external"] = {
            name: {
                "metric": done[0]["external"][name]["metric"],
                "value": mean_std([s["external"][name]["value"] for s in done]),
            }
            for name in names
        }
    return summary
