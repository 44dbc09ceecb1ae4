"""VGG16, InceptionV3 and ResNet50 on the same data: the reference paper's Table III (training and
validation accuracy and loss) beside ours, then Testing accuracy on the full split and the leak-free
subset, per-class recall, parameters, multiply-adds, speed, and the external sets.

Reference: Pillai et al., "Brain Tumor Classification using VGG 16, ResNet50, and Inception V3 Transfer
Learning Models", INOCON 2023, Table III.

    python experiments/compare_models.py --scale cpu    # 2-core CPU: 64 px (InceptionV3 75 px), 3 seeds
    python experiments/compare_models.py --scale gpu    # 224 / 224 / 299 px with the aux head, 3 seeds
"""

import sys

from resnet_scratch.experiment import Arm, model_config, recorded_seeds, run_arms
from resnet_scratch.experiment_cli import RECIPES, base_config, experiment_args, output_dir, results_folder
from resnet_scratch.experiment_pages import plot_curves, plot_test_accuracy, pm, write_results

NAME = "compare_models"
MODELS = {"VGG16": "vgg16", "InceptionV3": "inception_v3", "ResNet50": "resnet50"}
# The paper's Table III: training and validation accuracy (%) and loss, after its transfer learning.
PAPER = {
    "VGG16": {"train_accuracy": 97.24, "val_accuracy": 91.58, "train_loss": 0.3027, "val_loss": 1.3502},
    "InceptionV3": {"train_accuracy": 89.93, "val_accuracy": 63.86, "train_loss": 0.2225, "val_loss": 5.7651},
    "ResNet50": {"train_accuracy": 94.32, "val_accuracy": 81.94, "train_loss": 0.6273, "val_loss": 2.0415},
}
SCALE_NOTES = {
    "tiny": "Tiny scale: a smoke test on generated images; the numbers mean nothing.",
    "cpu": "CPU scale: every model from scratch at 64 px (InceptionV3 at its 75 px minimum, so without its "
    "auxiliary head, which needs 299 px) for a few epochs. This compares the three at one small, equal budget; "
    "it is not the paper's setting, and none of them is near convergence: see the GPU preset for full "
    "resolution, and docs/results/resnet18_cpu_onecycle for what a longer CPU run reaches.",
    "gpu": "GPU scale: 224 px (InceptionV3 299 px with its auxiliary loss), batch 128, one-cycle; the recipe "
    "was set, not tuned on the validation split (no GPU time was spent on tuning).",
}


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
    recorded = recorded_seeds(results_folder(NAME, args) / "results.json", arms)  # trained on another machine
    summaries = run_arms(arms, list(range(args.seeds)), args.runs_dir, train=not args.summarize_only, recorded=recorded)
    out = output_dir(NAME, args, summaries)
    plot_curves(out / "curves.png", summaries)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    sizes = ", ".join(f"{a.label} {a.config.input_size} px" for a in arms)
    started = ", ".join(f"{a.label}: {'ImageNet weights' if a.config.weights else 'from scratch'}" for a in arms)
    notes = [
        "\n".join(["The paper's Table III beside ours, mean ± std over seeds:", ""] + paper_table(summaries)),
        f"Protocol: {sizes}; {started}; VGG16 at a fifth of the others' learning rate (it has no BatchNorm). "
        "Where ours differs from the paper's: it fine-tunes ImageNet weights, these runs train from scratch unless "
        "a row says otherwise; its validation set is its own, ours is 10% of Training (near duplicates kept on one "
        "side from commit 6b7df8b on; runs trained before it, at a commit listed above, kept only identical "
        "images together); its training figures are not said to be measured in eval mode, ours are the last "
        "epoch's running figures over augmented batches (label-smoothed loss). Its numbers are copied from its "
        "Table III, ours are measured here; the two are not the same experiment.",
        f"{SCALE_NOTES[args.scale]} Budget: {base.epochs} epochs, {args.seeds} seed(s).",
    ]
    write_results(
        out,
        NAME,
        "Model comparison: VGG16, InceptionV3, ResNet50",
        "The reference paper's three networks on the same data and split, and the same recipe but for VGG16's "
        "learning rate (a fifth: it has no BatchNorm); its Table III figures beside ours, then Testing and the "
        "external sets.",
        args,
        argv,
        summaries,
        [
            ("Training loss and error per epoch", "curves.png"),
            ("Testing accuracy, full split and leak-free subset", "test_accuracy.png"),
        ],
        notes,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
