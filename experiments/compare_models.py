"""VGG16, InceptionV3 and ResNet50 on the same data: the reference paper's Table III (training and
validation accuracy and loss) beside ours, then Testing accuracy on the full split and the leak-free
subset, per-class recall, parameters, multiply-adds, speed, and the external sets.

Reference: Pillai et al., "Brain Tumor Classification using VGG 16, ResNet50, and Inception V3 Transfer
Learning Models", INOCON 2023, Table III.

    python experiments/compare_models.py --scale cpu    # 2-core CPU: 64 px (InceptionV3 75 px), 3 seeds
    python experiments/compare_models.py --scale gpu    # 224 / 224 / 299 px with the aux head, 3 seeds
"""

import sys
from pathlib import Path

from resnet_scratch.experiment import Arm, model_config
from resnet_scratch.experiment_cli import (
    RECIPES,
    base_config,
    experiment_args,
    output_dir,
    run_experiment,
)
from resnet_scratch.experiment_pages import fill, plot_curves, plot_test_accuracy, pm, read_phrases, write_results

NAME = "compare_models"
MODELS = {"VGG16": "vgg16", "InceptionV3": "inception_v3", "ResNet50": "resnet50"}
# The paper's Table III: training and validation accuracy (%) and loss, after its transfer learning.
PAPER = {
    "VGG16": {"train_accuracy": 97.24, "val_accuracy": 91.58, "train_loss": 0.3027, "val_loss": 1.3502},
    "InceptionV3": {"train_accuracy": 89.93, "val_accuracy": 63.86, "train_loss": 0.2225, "val_loss": 5.7651},
    "ResNet50": {"train_accuracy": 94.32, "val_accuracy": 81.94, "train_loss": 0.6273, "val_loss": 2.0415},
}
# The page's words; this script fills in the figures.
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "compare_models.md")


def paper_table(summaries: list[dict]) -> list[str]:
    """The paper's Table III beside ours (our training figures: the last epoch's running figures over
    augmented batches; our validation split is 10% of Training, near duplicates kept on one side)."""
    lines = [
        "| model | train acc %, paper / ours | val acc %, paper / ours | train loss, paper / ours "
        "| val loss, paper / ours | Testing full / leak-free % | img/s | training min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        paper = PAPER.get(s["label"])
        if paper is None or not s["finished"]:
            continue
        minutes = (
            sum(
                seed["seconds_per_epoch"] * len(seed["curves"]["train_loss"]) for seed in s["seeds"] if "curves" in seed
            )
            / 60
            / s["finished"]
        )
        lines.append(
            f"| {s['label']} | {paper['train_accuracy']:.2f} / {pm(s['train_accuracy'])} | "
            f"{paper['val_accuracy']:.2f} / {pm(s['val_accuracy'])} | {paper['train_loss']:.4f} / "
            f"{pm(s['train_loss'], False, 3)} | {paper['val_loss']:.4f} / {pm(s['val_loss'], False, 3)} | "
            f"{pm(s['test_accuracy'])} / {pm(s['leak_free_accuracy'])} | {pm(s['images_per_s'], False, 0)} | "
            f"{minutes:.1f} |"
        )
    return lines


def main(argv: list[str]) -> None:
    """Train every model at every seed, then write docs/results/compare_models/ (or -gpu/)."""
    args = experiment_args(__doc__, argv)
    base = base_config(args, RECIPES[args.scale])
    arms = [Arm(label, model_config(base, model, args.scale)) for label, model in MODELS.items()]
    summaries = run_experiment(NAME, args, arms)  # seeds trained on another machine keep their numbers
    out = output_dir(NAME, args, summaries)
    plot_curves(out / "curves.png", summaries)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    sizes = ", ".join(f"{a.label} {a.config.input_size} px" for a in arms)
    start = {a.label: PHRASES["from_imagenet" if a.config.weights else "from_scratch"] for a in arms}
    started = ", ".join(f"{label}: {how}" for label, how in start.items())
    budget = {"scale_note": PHRASES[f"scale_{args.scale}"], "epochs": base.epochs, "seeds": args.seeds}
    notes = [
        fill(PHRASES["paper_table"], {"table": "\n".join(paper_table(summaries))}),
        fill(PHRASES["protocol"], {"sizes": sizes, "started": started}),
        fill(PHRASES["budget"], budget),
    ]
    figures = [(PHRASES[f"caption_{f}"], f"{f}.png") for f in ("curves", "test_accuracy")]
    write_results(out, NAME, PHRASES["title"], PHRASES["about"], args, argv, summaries, figures, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
