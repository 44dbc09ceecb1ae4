"""Dropout in a setting built to overfit: ResNet-18 with and without dropout before its fc (p = 0.5; the
ResNet paper uses none) and VGG16 with and without its classifier's dropout (p = 0.5 after fc6 and
fc7, the VGG paper's), trained on a seeded, class-stratified 10% of the training rows with no
augmentation, weight decay or label smoothing, so that little but dropout (and ResNet's BatchNorm)
stands between the network and memorising its ~500 images. The train/validation gap is measured the
same way on both sides: the training rows and the validation rows both scored in eval mode, on centre
crops, after every epoch.

    python experiments/ablate_dropout.py --scale cpu    # 2-core CPU: 32 px, 30 epochs, 3 seeds
    python experiments/ablate_dropout.py --scale gpu    # 224 px
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from resnet_scratch.config import Config
from resnet_scratch.experiment import Arm, model_config
from resnet_scratch.experiment_cli import (
    RECIPES,
    base_config,
    experiment_args,
    output_dir,
    run_experiment,
)
from resnet_scratch.experiment_pages import (
    arm_colour,
    fill,
    plot_curves,
    plot_test_accuracy,
    read_phrases,
    seed_bars,
    write_results,
)
from resnet_scratch.experiment_stats import noise_margin
from resnet_scratch.report import new_figure, save_figure

NAME = "ablate_dropout"
# A seeded 10% of the training rows (514 images), and the epochs and input size of each scale (--epochs
# and --image-size override them). On the CPU, 32 px: VGG16's 134 M parameters make every step slow, and
# overfitting, not resolution, is the point here.
TRAIN_FRACTION = 0.10
EPOCHS = {"tiny": 1, "cpu": 30, "gpu": 40}
IMAGE_SIZE = {"tiny": 32, "cpu": 32, "gpu": None}
# A run whose training rows are scored below this (eval mode) at the last epoch has not fit them yet.
FITTED = 0.95
# The notes' sentences; the rules that choose them are in family_note and dropout_verdict.
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "ablate_dropout.md")
BATCH_SIZE = {"cpu": 48}  # 514 rows: 10 batches of 48 and one of 34, not a last batch of 2 (as 32 or 64 give)
# What the shared recipe regularises with, switched off: dropout is the one regulariser studied.
NO_OTHER_REGULARISER = {"augment": False, "weight_decay": 0.0, "label_smoothing": 0.0}
ARMS = {  # label: (model, dropout)
    "ResNet-18 p=0": ("resnet18", 0.0),
    "ResNet-18 p=0.5": ("resnet18", 0.5),
    "VGG16 p=0": ("vgg16", 0.0),
    "VGG16 p=0.5": ("vgg16", 0.5),
}


def arms_for(base: Config, scale: str) -> list[Arm]:
    """Each setting of ARMS on the shared recipe."""
    return [Arm(label, replace(model_config(base, model, scale), dropout=p)) for label, (model, p) in ARMS.items()]


def gaps(summary: dict) -> list[list[float]]:
    """Per seed, per epoch: training accuracy minus validation accuracy, both in eval mode (points)."""
    return [
        [100 * (t - v) for t, v in zip(s["curves"]["train_eval_accuracy"], s["curves"]["val_accuracy"])]
        for s in summary["seeds"]
        if "curves" in s
    ]


def fitted_gaps(summary: dict) -> list[list[float]]:
    """gaps() of the runs that fitted their training rows by the last epoch (the verdict's runs)."""
    runs = [r for r in summary["seeds"] if "curves" in r]
    return [g for g, run in zip(gaps(summary), runs) if run["curves"]["train_eval_accuracy"][-1] >= FITTED]


def plot_gap(path: Path, summaries: list[dict]) -> Path:
    """The gap per epoch (mean ± std over seeds) and at the last epoch (a dot per seed). The bars of
    the last epoch hold the fitted runs only, as the verdict does; an unfitted run is a red cross."""
    done = [s for s in summaries if s["finished"]]
    fig = new_figure(12, 4)
    ax_curve, ax_last = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for s in done:
        fitted = fitted_gaps(s)
        if not fitted:  # no run of this arm fitted: its gap says nothing yet
            continue
        values = np.asarray(fitted)
        x = np.arange(1, values.shape[1] + 1)
        mean = values.mean(0)
        line = ax_curve.plot(x, mean, label=s["label"], color=arm_colour(s["label"]))[0]
        if len(values) > 1:
            std = values.std(0, ddof=1)
            ax_curve.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax_curve.axhline(0, color="black", linewidth=0.8)
    ax_curve.set(
        xlabel="epoch",
        ylabel="train acc - val acc (points)",
        title="Gap per epoch, fitted runs, both in eval mode\n(mean, band ±1 std over seeds)",
    )
    ax_curve.grid(alpha=0.3)
    ax_curve.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(done))
    x = np.arange(len(done))
    seed_bars(
        ax_last,
        x,
        [[g[-1] for g in fitted_gaps(s)] or [np.nan] for s in done],
        0.6,
        colors=[arm_colour(s["label"]) for s in done],
    )
    unfit = [
        (i, 100 * (c["train_eval_accuracy"][-1] - c["val_accuracy"][-1]))
        for i, s in enumerate(done)
        for c in (run["curves"] for run in s["seeds"] if "curves" in run)
        if c["train_eval_accuracy"][-1] < FITTED
    ]
    if unfit:
        ax_last.plot(
            *zip(*unfit), "rx", markersize=8, label=f"run with below {100 * FITTED:.0f}% of its training rows right"
        )
        ax_last.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    ax_last.axhline(0, color="black", linewidth=0.8)
    ax_last.set_xticks(x, [s["label"] for s in done], rotation=15, ha="right")
    ax_last.set(ylabel="points")
    ax_last.set_title("Gap at the last epoch, fitted runs\n(bars: mean ± std, dots: seeds)", fontsize=10)
    ax_last.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def gap_notes(summaries: list[dict]) -> list[str]:
    """Whether each network overfits without dropout, and what dropout did to the gap and to leak-free
    Testing, seed by seed (seeds paired by number)."""
    by = {s["label"]: s for s in summaries if s["finished"]}
    lines = []
    for family in ("ResNet-18", "VGG16"):
        off, on = by.get(f"{family} p=0"), by.get(f"{family} p=0.5")
        runs_off = {r["seed"]: r for r in off["seeds"] if "curves" in r} if off and on else {}
        runs_on = {r["seed"]: r for r in on["seeds"] if "curves" in r} if off and on else {}
        seeds = sorted(runs_off.keys() & runs_on.keys())
        if seeds:
            lines.append(family_note(family, seeds, [(runs_off[k], runs_on[k]) for k in seeds]))
    return lines


def family_note(family: str, seeds: list[int], pairs: list[tuple[dict, dict]]) -> str:
    """One network's note: its gaps without and with dropout, the unfitted runs, and the verdict. A change
    counts only above the sampling noise of two validation accuracies at the runs' error rate
    (noise_margin). A run that has not fit its training rows (below FITTED, eval mode) has a small gap
    for that reason: it is named, and dropout is judged only on seeds where both runs fitted."""
    trained = np.array([[r["curves"]["train_eval_accuracy"][-1] for r in pair] for pair in pairs])
    val = np.array([[r["curves"]["val_accuracy"][-1] for r in pair] for pair in pairs])
    gap = 100 * (trained - val)  # seeds x (without, with)
    margin = noise_margin(1 - val.mean())
    fitted = [i for i in range(len(seeds)) if trained[i].min() >= FITTED]
    change = gap[fitted, 1] - gap[fitted, 0]
    tests = 100 * np.array([[r["leak_free_accuracy"] for r in pair] for pair in pairs])
    diff = tests[:, 1] - tests[:, 0]
    values = {"family": family, "n": len(seeds), "margin": f"{margin:.1f}"}
    values |= {"gap_off": f"{gap[:, 0].mean():.1f}", "gap_on": f"{gap[:, 1].mean():.1f}"}
    values |= {"sd_off": spread(gap[:, 0]), "sd_on": spread(gap[:, 1]), "sd_diff": spread(diff)}
    values |= {"above_noise": int((gap[:, 0] > margin).sum()), "test_diff": f"{np.mean(diff):+.1f}"}
    values |= {"test_off": f"{tests[:, 0].mean():.1f}", "test_on": f"{tests[:, 1].mean():.1f}"}
    findings = [fill(PHRASES["gaps"], values)]
    unfit = [
        fill(PHRASES["not_fitted_run"], {"seed": k, "label": label, "train": f"{100 * trained[i, j]:.1f}"})
        for i, k in enumerate(seeds)
        for j, label in enumerate(("p=0", "p=0.5"))
        if trained[i, j] < FITTED
    ]
    if unfit:
        findings.append(
            fill(PHRASES["not_fitted"], {"fitted_percent": f"{100 * FITTED:.0f}", "runs": "; ".join(unfit)})
        )
    if fitted:
        changes = ", ".join(f"{c:+.1f}" for c in change)
        findings.append(fill(PHRASES["changes"], {"count": len(fitted), "changes": changes}))
    verdict = dropout_verdict(change, margin, len(fitted))
    if fitted and (gap[fitted, 1] > margin).all():
        which = ("seed " if len(fitted) == 1 else "seeds ") + ", ".join(str(seeds[i]) for i in fitted)
        verdict += fill(PHRASES["still_a_gap"], {"gap": f"{gap[fitted, 1].mean():.1f}", "seeds": which})
    return fill(PHRASES["in_short"], {"findings": " ".join(findings), "verdict": verdict})


def dropout_verdict(change: np.ndarray, margin: float, fitted: int) -> str:
    """What dropout did to the gap on the fitted seeds: nothing measurable, inconsistent, or narrowed or
    widened it beyond the sampling noise."""
    below, above = int((change < -margin).sum()), int((change > margin).sum())
    if not fitted:
        verdict = PHRASES["none_fitted"]
    elif below == above == 0:
        verdict = fill(PHRASES["no_effect"], {"margin": f"{margin:.1f}"})
    elif below and above:
        verdict = PHRASES["inconsistent"]
    else:
        values = {"count": below or above, "fitted": fitted, "mean": f"{abs(change.mean()):.1f}"}
        verdict = fill(PHRASES["narrowed" if below else "widened"], values)
    return verdict + (PHRASES["one_seed"] if fitted == 1 else "")


def spread(values: np.ndarray) -> str:
    """ " ± sd" over seeds (sample std), or nothing for one seed."""
    return f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""


def main(argv: list[str]) -> None:
    """Train every dropout setting at every seed, then write docs/results/ablate_dropout/."""
    args = experiment_args(__doc__, argv)
    # VGG16's checkpoints are 2.7 GB an epoch: save the training state every 10 epochs, not every epoch.
    preset = (
        RECIPES[args.scale]
        | {
            "epochs": EPOCHS[args.scale],
            "image_size": IMAGE_SIZE[args.scale],
            "train_fraction": TRAIN_FRACTION,
            "train_eval": True,
            "checkpoint_every": 10,
        }
        | NO_OTHER_REGULARISER
        | ({"batch_size": BATCH_SIZE[args.scale]} if args.scale in BATCH_SIZE else {})
    )
    base = base_config(args, preset)
    arms = arms_for(base, args.scale)
    summaries = run_experiment(NAME, args, arms)
    out = output_dir(NAME, args, summaries)
    groups = {
        "ResNet-18": [a for a in ARMS if a.startswith("ResNet")],
        "VGG16": [a for a in ARMS if a.startswith("VGG")],
    }
    plot_curves(out / "curves.png", summaries, groups, train_key="train_eval_accuracy")
    plot_gap(out / "gap.png", summaries)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    fraction = f"{100 * TRAIN_FRACTION:.0f}"
    budget = {"epochs": base.epochs, "batch": base.batch_size, "size": base.input_size, "scale": args.scale}
    notes = gap_notes(summaries) + [fill(PHRASES["budget"], budget | {"fraction": fraction})]
    figures = [(PHRASES[f"caption_{f}"], f"{f}.png") for f in ("curves", "gap", "test_accuracy")]
    about = fill(PHRASES["about"], {"fraction": fraction})
    write_results(out, NAME, PHRASES["title"], about, args, argv, summaries, figures, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
