"""Residual against plain networks (skip=False: the same layers without identity shortcuts) at
depths 18 and 34, same recipe: training loss and validation error per epoch, as in the ResNet
paper's Figure 4, and the gradient norm of every stage at initialisation (the paper, Section 4.1:
with BatchNorm the plain net's gradients do not vanish; its deeper version still trains worse).

    python experiments/ablate_skip.py --scale cpu    # 2-core CPU, 64 px, 5 epochs, 3 seeds
    python experiments/ablate_skip.py --scale gpu    # 224 px, adds ResNet-50
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from resnet_scratch.data import load_split
from resnet_scratch.data.transforms import train_transform
from resnet_scratch.experiment import (
    RECIPES,
    Arm,
    base_config,
    experiment_args,
    mean_std,
    model_config,
    output_dir,
    plot_curves,
    plot_test_accuracy,
    run_arms,
    write_results,
)
from resnet_scratch.explain import stage_grad_norms
from resnet_scratch.models import build
from resnet_scratch.report import new_figure, save_figure

NAME = "ablate_skip"
EPOCHS = {"tiny": 1, "cpu": 5, "gpu": 12}  # one more epoch than the shared CPU recipe: the curves are the point
DEPTHS = {"tiny": (18, 34), "cpu": (18, 34), "gpu": (18, 34, 50)}


def grad_norms_at_init(arms: list[Arm], seeds: list[int], batch: int = 64) -> dict[str, dict[str, dict]]:
    """Per arm and stage: the gradient norm of one training batch of real images at initialisation,
    mean +- std over seeds (each seed its own initialisation and batch)."""
    config = arms[0].config
    split = load_split(Path(config.data), "Training", cache_dir=config.cache_dir)
    size = config.image_size or 224
    norms: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(split.labels), generator=g)[:batch]
        x = train_transform(split.images, size, g, scale=(config.crop_scale_min, 1.0), rows=rows)
        for arm in arms:
            torch.manual_seed(seed)
            model = build(arm.config.model, num_classes=len(split.classes), **arm.config.model_options())
            for stage, value in stage_grad_norms(model, x, split.labels[rows]).items():
                norms.setdefault(arm.label, {}).setdefault(stage, []).append(value)
    return {label: {stage: mean_std(v) for stage, v in stages.items()} for label, stages in norms.items()}


def plot_grad_norms(path: Path, norms: dict[str, dict[str, dict]]) -> Path:
    """Grouped bars, log scale: one group per stage, one bar per network."""
    labels = list(norms)
    stages = list(next(iter(norms.values())))
    fig = new_figure(10, 4)
    ax = fig.subplots()
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        means = [norms[label][s]["mean"] for s in stages]
        stds = [norms[label][s]["std"] for s in stages]
        hatch = "//" if label.startswith("plain") else None
        ax.bar(
            np.arange(len(stages)) + (i - (len(labels) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=label,
            hatch=hatch,
            alpha=0.85,
        )
    ax.set_yscale("log")
    ax.set_xticks(range(len(stages)), stages)
    ax.set(
        ylabel="gradient L2 norm (log)",
        title="Gradient norm per stage at initialisation (one batch of Training images)",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str]) -> None:
    """Train residual and plain networks at every seed, then write docs/results/ablate_skip/."""
    args = experiment_args(__doc__, argv)
    base = replace(base_config(args, RECIPES[args.scale]), epochs=EPOCHS[args.scale])
    arms = [
        Arm(
            f"{'residual' if skip else 'plain'}-{depth}",
            replace(model_config(base, f"resnet{depth}", args.scale), skip=skip),
        )
        for skip in (False, True)
        for depth in DEPTHS[args.scale]
    ]
    seeds = list(range(args.seeds))
    norms = grad_norms_at_init(arms, seeds)
    summaries = run_arms(arms, seeds, args.runs_dir)
    out = output_dir(NAME, args)
    out.mkdir(parents=True, exist_ok=True)
    groups = {kind: [a.label for a in arms if a.label.startswith(kind)] for kind in ("plain", "residual")}
    plot_curves(out / "curves.png", summaries, groups)
    plot_grad_norms(out / "grad_norms.png", norms)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    first, last = next(iter(norms[arms[0].label])), "fc"
    notes = [
        "Gradient norm at initialisation, first stage (conv1) over the last (fc), mean over seeds: "
        + ", ".join(f"{label} {stages[first]['mean'] / stages[last]['mean']:.3g}" for label, stages in norms.items())
        + "."
    ]
    write_results(
        out,
        NAME,
        "Skip connections: residual vs plain networks",
        "The same layers with and without identity shortcuts (plain = skip=False; projection "
        "shortcuts where the shape changes are removed too), same recipe and seeds.",
        args,
        argv,
        summaries,
        [
            (
                "Training loss and error per epoch, plain (top) and residual (bottom), "
                "as in the ResNet paper's Figure 4",
                "curves.png",
            ),
            ("Gradient norm per stage at initialisation", "grad_norms.png"),
            ("Testing accuracy, full split and leak-free subset", "test_accuracy.png"),
        ],
        notes,
        {"grad_norms_at_init": norms},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
