"""Residual against plain networks, as in the ResNet paper's Section 4.1 (Figure 4, Table 2): plain
and residual networks of 18 and 34 layers, the residual ones with the paper's shortcut option A
(zero-padded identity, as in its Figure 4) and option B (projections where the shape changes), same
recipe and seeds. Training and validation error per epoch, both measured in eval mode on centre
crops, and the gradient norm of every stage at initialisation and after training.

The paper's result has two halves: (1) the plain 34-layer network trains worse than the plain
18-layer one (degradation), and (2) with shortcuts the 34-layer network is the better one. The page
says, from the numbers, which half this run reproduces.

    python experiments/ablate_skip.py --scale cpu    # 2-core CPU: 64 px, a stated budget of epochs, 3 seeds
    python experiments/ablate_skip.py --scale gpu    # 224 px
    python experiments/ablate_skip.py --scale cpu --epochs 8 --image-size 96   # a longer, larger run
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from resnet_scratch.checkpoint import model_from_checkpoint
from resnet_scratch.config import Config
from resnet_scratch.data import load_split
from resnet_scratch.data.transforms import train_transform
from resnet_scratch.experiment import Arm
from resnet_scratch.experiment_cli import (
    RECIPES,
    base_config,
    experiment_args,
    output_dir,
    results_folder,
    run_experiment,
)
from resnet_scratch.experiment_pages import (
    arm_colour,
    fill,
    plot_curves,
    plot_test_accuracy,
    read_phrases,
    write_results,
)
from resnet_scratch.experiment_stats import VAL_IMAGES, mean_std, noise_margin
from resnet_scratch.explain import stage_grad_norms
from resnet_scratch.models import build
from resnet_scratch.report import new_figure, save_figure
from resnet_scratch.runtime import resolve_device

NAME = "ablate_skip"
# The budget at each scale, in epochs (--epochs overrides it).
EPOCHS = {"tiny": 1, "cpu": 4, "gpu": 8}
# The verdict sentences; the rules that choose them are below.
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "ablate_skip.md")
DEPTHS = (18, 34)


def arms_for(base: Config) -> list[Arm]:
    """Plain 18 and 34, then residual 18 and 34 with option B (torchvision's) and option A (the paper's Figure 4)."""
    arms = [Arm(f"plain-{d}", replace(base, model=f"resnet{d}", skip=False)) for d in DEPTHS]
    for option in ("B", "A"):
        arms += [Arm(f"residual-{d} ({option})", replace(base, model=f"resnet{d}", shortcut=option)) for d in DEPTHS]
    return arms


def probe_batch(config: Config, seed: int, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One augmented batch of Training images (seeded): the batch the gradient norms are measured on."""
    split = load_split(Path(config.data), "Training", cache_dir=config.cache_dir)
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(split.labels), generator=g)[:batch]
    x = train_transform(split.images, config.input_size, g, scale=(config.crop_scale_min, 1.0), rows=rows)
    return x, split.labels[rows], split.classes


def grad_norms(
    arms: list[Arm], seeds: list[int], runs: dict[str, list[Path]] | None = None, device: str = "cpu", batch: int = 64
) -> dict[str, dict]:
    """Per arm and stage: the gradient reaching the stage's output (explain.stage_grad_norms: the RMS of
    dLoss/dx over its elements) on one batch per seed (probe_batch: the same batch at initialisation and
    after training), mean +- std over seeds; at initialisation, or (runs given) of each seed's trained
    model."""
    norms: dict[str, dict[str, list[float]]] = {}
    for k, seed in enumerate(seeds):
        x, y, classes = probe_batch(arms[0].config, seed, batch)
        x, y = x.to(device), y.to(device)
        for arm in arms:
            if runs is None:
                torch.manual_seed(seed)
                model = build(arm.config.model, num_classes=len(classes), **arm.config.model_options())
            else:
                model, _ = model_from_checkpoint(runs[arm.label][k] / "best.safetensors")
            for stage, value in stage_grad_norms(model.to(device), x, y).items():
                norms.setdefault(arm.label, {}).setdefault(stage, []).append(value)
    return {label: {stage: mean_std(v) for stage, v in stages.items()} for label, stages in norms.items()}


def plot_grad_norms(path: Path, panels: dict[str, dict[str, dict]]) -> Path:
    """Lines with markers on a log scale, one panel per moment (initialisation, after training): the
    stages from the input on the x axis, a line per network (plain dashed), ±1 std as error bars."""
    fig = new_figure(11, 3.6 * len(panels))
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, (title, norms) in zip(axes, panels.items()):
        stages = [s for s in next(iter(norms.values())) if s != "fc"]  # the logits' gradient is another scale
        for label, values in norms.items():
            ax.errorbar(
                stages,
                [values[s]["mean"] for s in stages],
                yerr=[values[s]["std"] for s in stages],
                fmt="--o" if label.startswith("plain") else "-o",
                capsize=2,
                color=arm_colour(label),
                label=label,
            )
        ax.set_yscale("log")
        ax.set(ylabel="RMS of dLoss/d(stage output) (log)", xlabel="stage, from the input")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3)
    fig.suptitle(
        "The gradient reaching each stage's output (root mean square over its elements), on one augmented batch "
        "of Training images per seed,\nthe same batch in both panels (mean ± std over seeds)",
        fontsize=10,
    )
    return save_figure(fig, path)


def seedwise(by: dict, worse: str, better: str, key: str) -> tuple[float, float, str, str]:
    """(error of `worse`, error of `better`, the phrase saying in how many seeds `worse` has the higher
    error, the verdict on that: the phrase key reproduced, opposite or undecided). Errors in %, mean
    over all seeds; the verdict pairs seeds by their order."""
    a, b = (np.array([100 * (1 - v) for v in by[label][key]["values"]]) for label in (worse, better))
    n = min(len(a), len(b))
    agree = int((a[:n] > b[:n]).sum())
    if agree == n:
        seeds = phrase("seeds_every", {})
    elif agree == 0:
        seeds = phrase("seeds_none", {})
    else:
        seeds = phrase("seeds_some", {"agree": agree, "n": n})
    gap = float(a[:n].mean() - b[:n].mean())
    margin = noise_margin((a[:n].mean() + b[:n].mean()) / 200)
    if agree == n and gap > margin:
        verdict = "reproduced"
    elif agree == 0 and gap < -margin:
        verdict = "opposite"
    else:
        verdict = "undecided"
    return float(a.mean()), float(b.mean()), seeds, verdict


def phrase(key: str, values: dict[str, object]) -> str:
    """A sentence of templates/ablate_skip.md with its slots filled (floats with one decimal)."""
    return fill(PHRASES[key], {k: f"{v:.1f}" if isinstance(v, float) else v for k, v in values.items()})


def verdicts(summaries: list[dict], epochs: int) -> list[str]:
    """The paper's two halves, judged seed by seed on the last epoch's training error (eval mode, centre
    crops) and on the leak-free Testing subset (the full split shares images with Training). At a short
    budget the plain 34-layer network may only be slower to converge, so degradation "reproduced" says
    no more than "consistent with degradation"."""
    by = {s["label"]: s for s in summaries if s["finished"] and "train_eval_accuracy" in s}
    lines = []
    if {"plain-18", "plain-34"} <= set(by):
        deep, shallow, seeds, verdict = seedwise(by, "plain-34", "plain-18", "train_eval_accuracy")
        verdict = "degradation_reproduced" if verdict == "reproduced" else verdict
        values = {"verdict": PHRASES[verdict], "deep": deep, "shallow": shallow, "seeds": seeds, "epochs": epochs}
        lines.append(phrase("half_one", values))
    for option in ("B", "A"):
        small, deep_label = f"residual-18 ({option})", f"residual-34 ({option})"
        if {small, deep_label} <= set(by):
            shallow_err, deep_err, train_seeds, verdict = seedwise(by, small, deep_label, "train_eval_accuracy")
            shallow_test, deep_test, test_seeds, test_verdict = seedwise(by, small, deep_label, "leak_free_accuracy")
            values = {"option": option, "verdict": PHRASES[verdict], "test_verdict": PHRASES[test_verdict]}
            values |= {"deep_err": deep_err, "shallow_err": shallow_err, "train_seeds": train_seeds}
            values |= {"deep_test": deep_test, "shallow_test": shallow_test, "test_seeds": test_seeds}
            lines.append(phrase("half_two", values))
        if {"plain-34", deep_label} <= set(by):
            plain, residual, seeds, verdict = seedwise(by, "plain-34", deep_label, "train_eval_accuracy")
            values = {"option": option, "residual": residual, "plain": plain, "seeds": seeds}
            lines.append(phrase("shortcuts_at_34", values | {"verdict": PHRASES[verdict]}))
    if lines:
        margins = {"margin_5": noise_margin(0.05), "margin_15": noise_margin(0.15)}
        lines.append(phrase("the_rule", {"val_images": VAL_IMAGES} | margins))
    return lines


def main(argv: list[str]) -> None:
    """Train every arm at every seed, then write docs/results/ablate_skip/."""
    args = experiment_args(__doc__, argv)
    preset = RECIPES[args.scale] | {"epochs": EPOCHS[args.scale], "train_eval": True}
    base = base_config(args, preset)
    arms = arms_for(base)
    seeds = list(range(args.seeds))
    device = str(resolve_device(args.device))
    batch = 8 if args.smoke else 64  # a smoke run on the CPU at 224 px need not wait for 64 images
    at_init = grad_norms(arms, seeds, device=device, batch=batch)
    record = results_folder(NAME, args) / "results.json"  # where the trained grad norms are kept
    summaries = run_experiment(NAME, args, arms)
    runs = {s["label"]: [args.runs_dir / seed["run"] for seed in s["seeds"]] for s in summaries}
    done = all(s["finished"] == len(seeds) for s in summaries)
    have_checkpoints = all((run / "best.safetensors").is_file() for folders in runs.values() for run in folders)
    trained = grad_norms(arms, seeds, runs, device, batch) if done and have_checkpoints else {}
    if done and not trained and record.is_file():  # measured on checkpoints that are gone: as recorded
        trained = json.loads(record.read_text()).get("extra", {}).get("grad_norms_trained", {})
    out = output_dir(NAME, args, summaries)
    groups = {
        "plain": ["plain-18", "plain-34"],
        "residual, option B": ["residual-18 (B)", "residual-34 (B)"],
        "residual, option A": ["residual-18 (A)", "residual-34 (A)"],
    }
    plot_curves(out / "curves.png", summaries, groups, train_key="train_eval_accuracy")
    panels = {"at initialisation": at_init} | ({"after training (best checkpoint)": trained} if trained else {})
    plot_grad_norms(out / "grad_norms.png", panels)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    first = next(iter(at_init[arms[0].label]))
    ratios = {
        moment: ", ".join(f"{label} {st[first]['mean'] / st['conv5_x']['mean']:.3g}" for label, st in norms.items())
        for moment, norms in (("init", at_init), ("trained", trained))
    }
    best = ", ".join(f"{s['label']} {s['best_epoch']['mean']:.1f}" for s in summaries if s["finished"])
    budget = {"epochs": base.epochs, "size": base.input_size, "scale": args.scale, "schedule": base.schedule}
    notes = (
        verdicts(summaries, base.epochs)
        + [
            phrase("budget", budget | {"seeds": args.seeds, "best": best}),
            phrase("train_eval", {}),
            phrase("gradient_ratio", {"ratio": ratios["init"]}),
        ]
        + ([phrase("gradient_ratio_trained", {"ratio": ratios["trained"]})] if trained else [])
    )
    figures = [(PHRASES[f"caption_{f}"], f"{f}.png") for f in ("curves", "grad_norms", "test_accuracy")]
    extra = {"grad_norms_at_init": at_init, "grad_norms_trained": trained}
    write_results(out, NAME, PHRASES["title"], PHRASES["about"], args, argv, summaries, figures, notes, extra)


if __name__ == "__main__":
    main(sys.argv[1:])
