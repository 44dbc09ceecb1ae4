"""Dropout: p in {0, 0.2, 0.5} before ResNet-18's fc, and VGG16 with and without the dropout of its
classifier (p = 0.5 after fc6 and fc7), same recipe: the train/validation gap and Testing accuracy.

    python experiments/ablate_dropout.py --scale cpu    # 2-core CPU, 64 px, 4 epochs, 3 seeds
    python experiments/ablate_dropout.py --scale gpu    # 224 px
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from resnet_scratch.experiment import (
    RECIPES,
    Arm,
    base_config,
    experiment_args,
    model_config,
    output_dir,
    plot_curves,
    plot_test_accuracy,
    run_arms,
    seed_bars,
    write_results,
)
from resnet_scratch.report import new_figure, save_figure

NAME = "ablate_dropout"
ARMS = {  # label: (model, dropout)
    "ResNet-18 p=0": ("resnet18", 0.0),
    "ResNet-18 p=0.2": ("resnet18", 0.2),
    "ResNet-18 p=0.5": ("resnet18", 0.5),
    "VGG16 no dropout": ("vgg16", 0.0),
    "VGG16 p=0.5": ("vgg16", None),  # the model's own default: the same run as compare_models' VGG16
}


def plot_gap(path: Path, summaries: list[dict]) -> Path:
    """Last-epoch training accuracy minus validation accuracy per arm (the overfitting dropout fights)."""
    done = [s for s in summaries if s["finished"]]
    gaps = [[100 * (t - v) for t, v in zip(s["train_accuracy"]["values"], s["val_accuracy"]["values"])] for s in done]
    fig = new_figure(8, 3.6)
    ax = fig.subplots()
    x = np.arange(len(done))
    seed_bars(ax, x, gaps, 0.6)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [s["label"] for s in done], rotation=15, ha="right")
    ax.set(
        ylabel="train acc - val acc (points)",
        title="Generalisation gap at the last epoch (bars: mean ± std, dots: seeds)",
    )
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def main(argv: list[str]) -> None:
    """Train every dropout setting at every seed, then write docs/results/ablate_dropout/."""
    args = experiment_args(__doc__, argv)
    base = base_config(args, RECIPES[args.scale])
    arms = [Arm(label, replace(model_config(base, model, args.scale), dropout=p)) for label, (model, p) in ARMS.items()]
    summaries = run_arms(arms, list(range(args.seeds)), args.runs_dir)
    out = output_dir(NAME, args)
    out.mkdir(parents=True, exist_ok=True)
    groups = {
        "ResNet-18": [a for a in ARMS if a.startswith("ResNet")],
        "VGG16": [a for a in ARMS if a.startswith("VGG")],
    }
    plot_curves(out / "curves.png", summaries, groups)
    plot_gap(out / "gap.png", summaries)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    write_results(
        out,
        NAME,
        "Dropout: ResNet-18's fc and VGG16's classifier",
        "Dropout before ResNet-18's fc at p = 0, 0.2, 0.5 (the ResNet paper uses none), and VGG16 "
        "with its classifier dropout (p = 0.5, the paper's) and without; everything else the same.",
        args,
        argv,
        summaries,
        [
            ("Training loss and error per epoch", "curves.png"),
            ("Train/validation gap at the last epoch", "gap.png"),
            ("Testing accuracy, full split and leak-free subset", "test_accuracy.png"),
        ],
        [
            "Training accuracy is the running figure of the epoch on augmented crops with dropout on, "
            "validation accuracy is measured afterwards on centre crops in eval mode; a gap below zero "
            "means the network is still underfitting at this budget, the regime where dropout can only "
            "slow learning down. Dropout is meant for runs long enough to overfit, which these are not."
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
