"""Experiments: arms (labelled settings) x seeds, each run trained by fit(), summarised as mean +- std.

An experiment script (experiments/*.py) lists its arms and its scale presets; this module runs them
and writes docs/results/<experiment>/ with results.json (every number, per seed too), README.md (the
table, the command, commits and devices) and the plots. Nothing in those files is typed by hand.

Runs are stored as runs_dir/<model>-<settings hash>-seed<k>, named by what they train and not by the
experiment, so a run already finished with the same settings is reused (an experiment that crashed
restarts where it stopped, and two experiments that need the same run train it once); a run cut
short resumes from its last epoch.
"""

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.ticker
import numpy as np
import torch

from .checkpoint import read_epochs
from .config import Config, load_config, to_dict
from .data import default_external_root
from .files import atomic_write_text
from .models import build
from .report import new_figure, save_figure
from .runtime import TrainingDiverged, git_commit
from .summary import count_macs
from .train import fit

CLASS_ORDER_HINT = ("glioma", "meningioma", "notumor", "pituitary")
# The validation split (10% of Training's 5,712 images): what the ablations' accuracies are measured on.
VAL_IMAGES = 570


def noise_margin(error: float, n: int = VAL_IMAGES) -> float:
    """Points by which two error rates near `error` (a fraction), each measured on n images, can differ
    from sampling alone: two standard errors of the difference of two independent accuracies (2.6 points
    at 5% error, 4.6 at 18%), a rough bar that sampling crosses about one time in twenty. The ablations
    count a difference only above it; noise from training itself is judged by asking every seed to agree."""
    return 200 * float(np.sqrt(2 * error * (1 - error) / n))


# The recipe every experiment shares at each scale (from scratch: SGD + nesterov, one-cycle, label
# smoothing, a floor on the crop's share of the slice); an experiment overrides only what it studies.
RECIPES: dict[str, dict[str, object]] = {
    # A smoke test on generated images: it must run, not learn.
    "tiny": {"image_size": 32, "epochs": 1, "batch_size": 4, "lr": 0.01, "val_fraction": 0.2},
    # The 2-core CPU: 64 px (InceptionV3: its 75 px minimum) and bf16 autocast; each experiment's
    # page gives the time its runs' epochs took.
    "cpu": {
        "image_size": 64,
        "epochs": 4,
        "batch_size": 64,
        "schedule": "onecycle",
        "lr": 0.05,
        "weight_decay": 5e-4,
        "nesterov": True,
        "label_smoothing": 0.1,
        "crop_scale_min": 0.35,
    },
    # Full resolution (the model's own: 224, InceptionV3 299 with its auxiliary loss), at a batch that
    # keeps an H100 busy; epochs estimated (not measured) to fit an experiment in one device command.
    "gpu": {
        "image_size": None,
        "epochs": 8,
        "checkpoint_every": 4,  # a VGG16 checkpoint and state are 2.7 GB: not every epoch
        "batch_size": 128,
        "schedule": "onecycle",
        "lr": 0.1,
        "weight_decay": 5e-4,
        "nesterov": True,
        "label_smoothing": 0.1,
        "crop_scale_min": 0.25,
    },
}
SCALES = tuple(RECIPES)


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


def settings_of(config: Config) -> dict[str, object]:
    """Everything a run's result depends on (not its name, folder or seed)."""
    return {k: v for k, v in to_dict(config).items() if k not in NOT_SETTINGS}


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
        fit(config, resume=run.is_dir())  # a run killed before its first commit starts again, in place
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
    return base | {
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        **{key: last[key] for key in ("train_eval_accuracy", "train_eval_loss") if key in last},
        "best_epoch": results["best_epoch"] + 1,
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
    }


def external_headline(result: dict) -> dict[str, object]:
    """What an external set's row shows: accuracy where its classes are known, else tumour sensitivity."""
    if result["accuracy"] is not None:
        return {"metric": "accuracy", "value": result["accuracy"], "images": result["images"]}
    return {"metric": "tumour sensitivity", "value": result["tumour_sensitivity"], "images": result["images"]}


def mean_std(values: list[float]) -> dict[str, object]:
    """Mean and sample standard deviation (0 for a single value) of per-seed numbers."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": a.tolist()}


def model_cost(config: Config) -> dict[str, object]:
    """Parameters and forward multiply-adds (eval mode, one image) of the arm's model at its input size."""
    size = config.input_size
    with torch.device("meta"):
        model = build(config.model, num_classes=4, **config.model_options())
    macs, _ = count_macs(model.eval(), size)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": macs, "input_size": size}


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
            for key in ("train_eval_accuracy", "train_eval_loss")
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


def recorded_arms(path: Path) -> dict[str, dict[str, object]]:
    """The arms of the results.json at `path`, by label (none where there is no such file)."""
    if not path.is_file():
        return {}
    return {arm["label"]: arm for arm in json.loads(path.read_text()).get("arms", [])}


def recorded_seeds(path: Path, arms: list[Arm]) -> dict[tuple[str, int], dict[str, object]]:
    """The seed summaries that the results.json at `path` records for arms of the same label and
    settings as `arms`, by (label, seed): runs trained in another runs_dir or on another machine (a
    fresh checkout has no runs/), whose numbers an experiment can reuse instead of training them again."""
    seeds = {}
    for label, was in recorded_arms(path).items():
        arm = next((arm for arm in arms if arm.label == label), None)
        if arm is None:
            continue
        differ = settings_differences(was.get("settings", {}), to_dict(arm.config))
        if differ:
            print(f"[{label}] {path} records runs of other settings ({', '.join(differ)}): not reused", flush=True)
            continue
        seeds |= {(label, seed["seed"]): seed for seed in was.get("seeds", [])}
    return seeds


def run_arms(
    arms: list[Arm],
    seeds: list[int],
    runs_dir: Path,
    train: bool = True,
    recorded: dict[tuple[str, int], dict[str, object]] | None = None,
) -> list[dict[str, object]]:
    """Every arm at every seed, then each arm's summary. A finished run in runs_dir is reused, else the
    seed's `recorded` summary (recorded_seeds), else the run is trained. Seed by seed, so that an
    experiment cut short has every arm at its first seeds rather than some arms at none."""
    labels = [arm.label for arm in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"arm labels must differ: {labels}")
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
            run = run_seed(arm, seed, runs_dir, train)
            if finished(run):
                done[arm.label].append(summarize_run(run))
    minutes = (time.perf_counter() - start) / 60
    print(f"\nall {len(arms) * len(seeds)} runs done in {minutes:.1f} min ({reused} from the record)", flush=True)
    return [summarize_arm(arm, done[arm.label]) for arm in arms]


def pm(stat: dict | None, percent: bool = True, digits: int = 2) -> str:
    """ "mean +- std" text of a mean_std dict; percentages for fractions."""
    if stat is None:
        return "-"
    scale = 100 if percent else 1
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def results_table(summaries: list[dict[str, object]]) -> list[str]:
    """The markdown table: one row per arm, mean ± std over seeds."""
    classes = next((list(s["recall"]) for s in summaries if "recall" in s), list(CLASS_ORDER_HINT))
    external = next((s["external"] for s in summaries if s.get("external")), {})
    train_eval = any("train_eval_accuracy" in s for s in summaries)
    header = ["arm", "params (M)", "GMACs", "s / epoch", "train acc %", "train loss"]
    header += ["train acc (eval) %"] if train_eval else []
    header += ["val acc %", "val loss", "test acc %", "leak-free acc %"] + [f"recall {c} %" for c in classes]
    header += [f"{name}: {v['metric']} %" for name, v in external.items()] + ["seeds"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for s in summaries:
        if not s["finished"]:
            why = f"0 of {s['diverged']} (diverged)" if s["diverged"] else "0 (not run)"
            lines.append(f"| {s['label']} | " + " | ".join(["-"] * (len(header) - 2)) + f" | {why} |")
            continue
        cells = [s["label"], f"{s['params'] / 1e6:.1f}", f"{s['macs'] / 1e9:.2f}", pm(s["seconds_per_epoch"], False, 1)]
        cells += [pm(s["train_accuracy"]), pm(s["train_loss"], False, 3)]
        cells += [pm(s.get("train_eval_accuracy"))] if train_eval else []
        cells += [pm(s["val_accuracy"]), pm(s["val_loss"], False, 3), pm(s["test_accuracy"])]
        cells += [pm(s["leak_free_accuracy"])] + [pm(s["recall"][c], digits=1) for c in classes]
        cells += [pm(s.get("external", {}).get(name, {}).get("value"), digits=1) for name in external]
        cells.append(f"{s['finished']}" + (f" ({s['diverged']} diverged)" if s["diverged"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _band(ax, x: np.ndarray, runs: list[list[float]], style: str, label: str, color=None, width: float = 1.5):
    values = np.asarray(runs, dtype=float)
    mean = values.mean(0)
    line = ax.plot(x, mean, style, label=label, color=color, linewidth=width)[0]
    if len(values) > 1:
        ax.fill_between(
            x, mean - values.std(0, ddof=1), mean + values.std(0, ddof=1), color=line.get_color(), alpha=0.15
        )
    return line.get_color()


def plot_curves(
    path: Path,
    summaries: list[dict[str, object]],
    groups: dict[str, list[str]] | None = None,
    train_key: str = "train_accuracy",
) -> Path:
    """Training loss and error against epochs, mean over seeds with a ±1 std band; one row of two
    panels per group of arms (the ResNet paper's Figure 4 puts plain and residual apart), every row on
    the same axes. train_key: the running training accuracy of the epoch ("train_accuracy", augmented
    crops, dropout on) or the training rows scored like validation ("train_eval_accuracy")."""
    by_label = {s["label"]: s for s in summaries if s["finished"]}
    groups = groups or {"": list(by_label)}
    fig = new_figure(11, 3.4 * len(groups) + 0.8)
    axes = fig.subplots(len(groups), 2, squeeze=False, sharex=True, sharey="col")
    augmented, smoothed = training_conditions(list(by_label.values()))
    running = "running, augmented" if augmented else "running"
    measured = "eval mode, centre crops" if train_key == "train_eval_accuracy" else running
    loss_label = "running training loss" + (" (smoothed labels)" if smoothed else "")
    for row, (title, labels) in zip(axes, groups.items()):
        for label in labels:
            if label not in by_label:
                continue
            curves = [s["curves"] for s in by_label[label]["seeds"] if "curves" in s]
            x = np.arange(1, len(curves[0]["train_loss"]) + 1)
            color = _band(row[0], x, [c["train_loss"] for c in curves], "o-", label)
            train = [[100 * (1 - a) for a in c.get(train_key) or c["train_accuracy"]] for c in curves]
            _band(row[1], x, train, "--", f"{label}, training", color, 1.0)
            val = [[100 * (1 - a) for a in c["val_accuracy"]] for c in curves]
            _band(row[1], x, val, "s-", f"{label}, validation", color, 2.0)
        row[0].set(ylabel=loss_label, title=f"{title}: training loss".strip(": "))
        row[1].set(ylabel="error (%)", title=f"{title}: error, training ({measured}) dashed".strip(": "))
        for ax in row:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return save_figure(fig, path)


def seed_bars(ax, x: np.ndarray, per_arm: list[list[float]], width: float, label: str | None = None) -> None:
    """Bars of the mean with ±1 sample std, and a black dot for every seed's value."""
    stats = [mean_std(values) for values in per_arm]
    ax.bar(x, [st["mean"] for st in stats], width, yerr=[st["std"] for st in stats], capsize=3, label=label, alpha=0.8)
    for xi, values in zip(x, per_arm):
        ax.plot([xi] * len(values), values, "k.", markersize=4)


def seed_points(ax, x: np.ndarray, per_arm: list[list[float]], label: str | None = None) -> None:
    """The mean as a marker with ±1 sample std, and a small black dot for every seed's value beside it:
    for axes that do not start at zero, where a bar's length would mislead."""
    stats = [mean_std(values) for values in per_arm]
    ax.errorbar(
        x, [st["mean"] for st in stats], yerr=[st["std"] for st in stats], fmt="o", capsize=4, markersize=6, label=label
    )
    for xi, values in zip(x, per_arm):
        ax.plot([xi + 0.07] * len(values), values, "k.", markersize=4)


def plot_test_accuracy(path: Path, summaries: list[dict[str, object]]) -> Path:
    """Testing accuracy per arm, full split and leak-free subset: mean ± std and each seed, as points,
    on an axis cut to the range of the values (bars would exaggerate the differences)."""
    done = [s for s in summaries if s["finished"]]
    fig = new_figure(max(5, 1.6 * len(done)), 3.8)
    ax = fig.subplots()
    x = np.arange(len(done))
    for offset, key, name in (
        (-0.15, "test_accuracy", "full Testing"),
        (0.15, "leak_free_accuracy", "leak-free subset"),
    ):
        seed_points(ax, x + offset, [[100 * v for v in s[key]["values"]] for s in done], name)
    low = min(
        [100 * v for s in done for key in ("test_accuracy", "leak_free_accuracy") for v in s[key]["values"]], default=0
    )
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_xlim(-0.6, len(done) - 0.4)
    ax.set_xticks(x, [s["label"] for s in done], rotation=15, ha="right")
    ax.set(
        ylabel="accuracy (%), axis not from 0", title="Testing accuracy (circles: mean ± std over seeds, dots: seeds)"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    return save_figure(fig, path)


def experiment_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every experiment script shares."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="cpu",
        help="cpu: this 2-core machine in under an hour; gpu: full resolution; tiny: a smoke test",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    p.add_argument("--data", type=Path, help="dataset root (default: the training default, $RESNET_SCRATCH_DATA)")
    p.add_argument(
        "--out", type=Path, help="results folder (default docs/results/<experiment>, or <experiment>-<scale> off cpu)"
    )
    p.add_argument("--runs-dir", type=Path, default=Path("runs/experiments"), help="where the runs' checkpoints go")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="decoded-image cache shared by the runs")
    p.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda[:N]"')
    p.add_argument("--epochs", type=int, help="override the scale preset's epochs")
    p.add_argument("--image-size", type=int, help="override the scale preset's input size (px)")
    p.add_argument(
        "--summarize-only",
        action="store_true",
        help="train nothing: write the results of the runs that finished (after a run out of time)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="one epoch per run: to check a preset's command end to end on generated data (SMOKE=1 of the GPU "
        "scripts) before any GPU time is spent",
    )
    p.add_argument(
        "--external",
        default=str(default_external_root()),
        help="other collections each run is scored on after Testing ('none' to skip); default: %(default)s",
    )
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    return args


def base_config(args: argparse.Namespace, overrides: dict[str, object]) -> Config:
    """The scale preset's settings plus the command line's data, cache, device, external sets, and
    its --epochs and --image-size where given."""
    extra: dict[str, object] = {"device": args.device, "cache_dir": str(args.cache_dir), "external": args.external}
    for key in ("data", "epochs", "image_size"):
        if getattr(args, key) is not None:
            extra[key] = str(getattr(args, key)) if key == "data" else getattr(args, key)
    if args.smoke:
        extra["epochs"] = 1
    return load_config(None, overrides | extra)


def results_folder(name: str, args: argparse.Namespace) -> Path:
    """docs/results/<name> for the CPU preset (the committed results), <name>-<scale> otherwise."""
    if args.out is not None:
        return args.out
    return Path("docs/results") / (name if args.scale == "cpu" else f"{name}-{args.scale}")


def recorded_richer(path: Path, summaries: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """The arms of the results.json at `path` (if any) that hold more finished runs than the summary of
    the same label and settings in `summaries`, by label."""
    old = recorded_arms(path)
    return {
        arm["label"]: was
        for arm in summaries
        if (was := old.get(arm["label"]))
        and was.get("finished", 0) > arm["finished"]
        and not settings_differences(was.get("settings", {}), arm["settings"])
    }


def output_dir(name: str, args: argparse.Namespace, summaries: list[dict[str, object]]) -> Path:
    """results_folder(name, args), created.

    Stops, writing nothing, where the folder's results.json holds more finished runs of an arm with the
    same settings than `summaries` has (its runs are in another runs_dir, or on another machine): a page
    regenerated with --summarize-only must never lose results. An arm whose settings changed may shrink.
    """
    out = results_folder(name, args)
    path = out / "results.json"
    new = {arm["label"]: arm for arm in summaries}
    fewer = [
        f"{label}: {new[label]['finished']} of {was['finished']}"
        for label, was in recorded_richer(path, summaries).items()
    ]
    if fewer:
        raise SystemExit(
            f"{path} holds more finished runs than {args.runs_dir} has ({'; '.join(fewer)}): not overwriting it. "
            "Point --runs-dir at the runs, ask for as many --seeds as it records, or write elsewhere with --out "
            "(any run trained now is kept in the runs_dir)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def settings_differences(a: dict[str, object], b: dict[str, object]) -> list[str]:
    """The settings in which two arms' recorded settings differ (none: they train the same runs).
    Settings added since one was recorded take their defaults; where runs and files go does not count."""
    try:
        a, b = settings_of(load_config(None, a)), settings_of(load_config(None, b))
    except (ValueError, TypeError, KeyError):  # a setting since removed, or a value no longer valid
        return ["a setting no longer valid"]
    return sorted(key for key in a if a[key] != b.get(key))


def short_commit(commit: str) -> str:
    """12 hex digits, keeping the -dirty mark of a run trained with uncommitted changes."""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def training_conditions(arms: list[dict[str, object]]) -> tuple[bool, bool]:
    """(augmented, label-smoothed): whether any arm trains on augmented batches (the default where no arm
    records its settings) and whether any smooths its labels."""
    settings = [arm["settings"] for arm in arms if "settings" in arm]
    augmented = any(s.get("augment", True) for s in settings) or not settings
    return augmented, any(s.get("label_smoothing", 0) for s in settings)


def table_columns(arms: list[dict[str, object]]) -> str:
    """What the table's training columns measure, for the arms' settings (augmented or not, label
    smoothing or not)."""
    augmented, smoothed = training_conditions(arms)
    batches = "augmented batches" if augmented else "unaugmented batches"
    smoothing = "loss with label smoothing, " if smoothed else ""
    return (
        "Training and validation figures are the last epoch's: `train acc` and `train loss` are running figures over "
        f"the epoch's {batches} ({smoothing}dropout on where an arm has it), `train acc (eval)` scores training "
        "images as validation is scored (eval mode, centre crops). Testing is evaluated once per run, on the "
        "checkpoint with the best validation accuracy."
    )


def unfinished(record: dict[str, object]) -> str:
    """'' when every arm has all its seeds, else which arms have how many so far."""
    short = [
        (arm["label"], arm.get("finished", 0)) for arm in record["arms"] if arm.get("finished", 0) < record["seeds"]
    ]
    if not short:
        return ""
    done = ", ".join(f"{label} {n}" for label, n in short)
    return (
        f" (**not finished**: {done} of {record['seeds']} so far; rerunning the command trains the rest, and a "
        "single seed's ± 0.00 is no spread)"
    )


def training_time(record: dict[str, object]) -> str:
    """' The runs' epochs took N min in all.' from the per-seed seconds, or '' for older records."""
    seconds = [
        seed.get("training_seconds")
        for arm in record["arms"]
        for seed in arm.get("seeds", [])
        if "diverged" not in seed
    ]
    if not seconds or None in seconds:
        return ""
    return (
        f" The {len(seconds)} runs' training epochs took {sum(seconds) / 60:.0f} min in all (evaluation on "
        "Testing and the external sets not counted)."
    )


def results_markdown(record: dict[str, object], figure_dir: str = "") -> list[str]:
    """An experiment's results.json as markdown: what and how, the table, notes, figures (their
    paths prefixed with figure_dir, so docs/results.md can point into the experiment's folder)."""
    lines = [
        record["about"],
        "",
        "```",
        record["command"],
        "```",
        "",
        f"Scale preset `{record['scale']}`, {record['seeds']} seed(s) per arm{unfinished(record)}; device "
        f"{', '.join(record['devices'])}; "
        f"runs trained at commit(s) {', '.join(f'`{short_commit(c)}`' for c in record['run_commits'])}; "
        f"written {record['written_at']}. "
        "Each arm's settings are in results.json. Percentages are mean ± sample std over seeds. "
        + table_columns(record["arms"])
        + training_time(record),
        "",
    ]
    lines += results_table(record["arms"]) + [""]
    if not any(arm.get("external") for arm in record["arms"]):
        lines += [
            "External sets: not scored in these runs (run before the external scoring, or with "
            "--external none); rerun the command above to add them.",
            "",
        ]
    lines += [note + "\n" for note in record["notes"]]
    for figure in record["figures"]:
        lines += [f"![{figure['caption']}]({figure_dir}{figure['file']})", "", f"*{figure['caption']}*", ""]
    return lines


def write_results(
    out: Path,
    name: str,
    title: str,
    about: str,
    args: argparse.Namespace,
    argv: list[str],
    summaries: list[dict[str, object]],
    figures: list[tuple[str, str]],
    notes: list[str] | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """results.json and README.md: the command, commits, devices, the table and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = [s for arm in summaries for s in arm["seeds"]]
    commits = sorted({s["commit"] for s in seeds})
    devices = sorted({f"{s['device']} (torch {s['torch']})" for s in seeds})
    # the command that trains these runs: --summarize-only only rewrote the page from them
    command = " ".join(["python", f"experiments/{name}.py", *(a for a in argv if a != "--summarize-only")])
    record = {
        "experiment": name,
        "title": title,
        "scale": args.scale,
        "command": command,
        "written_at": time.strftime("%Y-%m-%d %H:%M"),
        "commit_at_write": git_commit(),
        "run_commits": commits,
        "devices": devices,
        "seeds": args.seeds,
        "arms": summaries,
        "about": about,
        "notes": notes or [],
        "figures": [{"caption": c, "file": f} for c, f in figures],
        "extra": extra or {},
    }
    atomic_write_text(out / "results.json", json.dumps(record, indent=1))
    path = out / "README.md"
    atomic_write_text(path, "\n".join([f"# {title}", ""] + results_markdown(record)))
    print(f"wrote {path} and results.json", flush=True)
    return path
