"""Reports and their plots: training curves, confusion matrices, image grids (with Grad-CAM), and
report.md, written by one writer for a run (run_report) and for an evaluation (evaluation_report).

Figures are matplotlib Figure objects saved directly: no pyplot, so importing this module never
switches the caller's matplotlib backend.
"""

import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from .checkpoint import read_epochs
from .config import Config
from .files import atomic_write, atomic_write_text
from .predictor import Predictor, Preprocess
from .study import Study


def new_figure(width: float, height: float) -> Figure:
    """A figure that belongs to no pyplot state (nothing global is touched)."""
    return Figure(figsize=(width, height))


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Lay out and write a figure (atomically); returns its path."""
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return Path(path)


def plot_curves(run: Path) -> Path:
    """Loss and accuracy per epoch, train vs validation: curves.png."""
    lines = read_epochs(run)
    epochs = [line["epoch"] for line in lines]
    fig = new_figure(10, 3.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [line["train_loss"] for line in lines], "o-", label="train (label-smoothed, augmented)")
    ax_loss.plot(epochs, [line["val_loss"] for line in lines], "s-", label="validation (plain cross-entropy)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * line["train_accuracy"] for line in lines], "o-", label="train (running, augmented)")
    ax_acc.plot(epochs, [100 * line["val_accuracy"] for line in lines], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, run / "curves.png")


def plot_confusion(path: Path, panels: list[tuple[str, list[list[int]], list[str], list[str]]]) -> Path:
    """Confusion matrices side by side: (title, counts, true-class names, predicted-class names) each;
    cells are coloured by the share of their row."""
    fig = new_figure(5.5 * len(panels), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, counts, rows, cols) in zip(axes, panels):
        cm = np.array(counts, dtype=float).reshape(len(rows), len(cols))
        rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(rows)):
            for j in range(len(cols)):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if rates[i, j] > 0.5 else "black",
                    fontsize=9,
                )
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_figure(fig, path)


def testing_panels(results) -> list[tuple[str, list[list[int]], list[str], list[str]]]:
    """The confusion panels of the full Testing split and its leak-free subset (evaluate.Results)."""
    panels = []
    for r, title in ((results.test, "Testing (full)"), (results.test_leak_free, "Testing (leak-free)")):
        if r is not None:
            panels.append(
                (f"{title}: {100 * r.accuracy:.2f}% of {r.samples}", r.confusion_matrix, r.classes, r.classes)
            )
    return panels


def plot_predictions(
    path: Path, images: Tensor, labels: Tensor, logits: Tensor, classes: list[str], count: int = 24
) -> Path:
    """A grid of Testing images with predicted and true class, mistakes first."""
    labels = labels.cpu()
    probabilities = logits.softmax(1)
    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1).values
    wrong = torch.nonzero(predicted != labels).flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)].tolist()  # most confident mistakes first
    right = torch.nonzero(predicted == labels).flatten().tolist()
    generator = np.random.default_rng(0)
    chosen = wrong[:count] + list(generator.permutation(right)[: max(0, count - len(wrong))])
    cols = 6
    rows = max(1, -(-len(chosen) // cols))
    fig = new_figure(2.2 * cols, 2.5 * rows)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen):
        ax.imshow(images[i].cpu().permute(1, 2, 0).numpy())
        ok = predicted[i] == labels[i]
        ax.set_title(
            f"{classes[predicted[i]]} {100 * probabilities[i, predicted[i]]:.0f}%\ntrue: {classes[labels[i]]}",
            fontsize=8,
            color="green" if ok else "red",
        )
    fig.suptitle(
        f"Testing images: {len(wrong)} mistakes of {len(labels)} (red, most confident first), then correct ones",
        fontsize=10,
    )
    return save_figure(fig, path, dpi=100)


def plot_grad_cam(
    path: Path,
    model: nn.Module,
    images: Tensor,
    rows: list[int],
    captions: list[str],
    correct: list[bool],
    prep: Preprocess,
    title: str,
) -> Path:
    """Chosen images (store rows) over their Grad-CAM overlays, captions green when right, red when wrong."""
    from .explain import grad_cam, overlay

    count = max(len(rows), 1)
    fig = new_figure(2.2 * count, 4.8)
    axes = fig.subplots(2, count, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if rows:  # the chosen rows where the store lives, then to the model
        batch = prep.batch(images, torch.as_tensor(rows, device=images.device))
        heatmaps, _ = grad_cam(model, batch.to(next(model.parameters()).device))
        shown = prep.shown(batch)
        for col, (caption, ok) in enumerate(zip(captions, correct)):
            axes[0, col].imshow(shown[col].permute(1, 2, 0).numpy())
            axes[1, col].imshow(overlay(shown[col], heatmaps[col].cpu()).numpy())
            axes[0, col].set_title(caption, fontsize=8, color="green" if ok else "red")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=100)


def testing_grad_cam(
    path: Path, predictor: Predictor, images: Tensor, labels: Tensor, logits: Tensor, count: int = 4
) -> Path:
    """Grad-CAM of a few correct and a few wrong Testing predictions."""
    classes = predictor.classes
    labels = labels.cpu()
    predicted = logits.argmax(1)
    wrong = torch.nonzero(predicted != labels).flatten()[:count].tolist()
    right = torch.nonzero(predicted == labels).flatten()
    right = right[torch.randperm(len(right), generator=torch.Generator().manual_seed(0))[:count]].tolist()
    chosen = right + wrong
    captions = [f"{classes[predicted[i]]}\ntrue: {classes[labels[i]]}" for i in chosen]
    return plot_grad_cam(
        path,
        predictor.model,
        images,
        chosen,
        captions,
        [bool(predicted[i] == labels[i]) for i in chosen],
        predictor.prep,
        "Grad-CAM on the last stage: correct (green) and wrong (red) Testing predictions",
    )


def class_table(result) -> list[str]:
    """A markdown table of per-class precision, recall, F1 and support (of predictor.Scores)."""
    lines = ["| class | precision | recall | F1 | images |", "|---|---:|---:|---:|---:|"]
    for name, v in result.per_class.items():
        lines.append(f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    return lines


def testing_table(results) -> list[str]:
    """Testing, full and leak-free, as a markdown table (evaluate.Results)."""
    lines = ["| split | images | accuracy | macro F1 | loss |", "|---|---:|---:|---:|---:|"]
    for r, title in ((results.test, "full"), (results.test_leak_free, "leak-free")):
        if r is not None:
            lines.append(f"| {title} | {r.samples} | {100 * r.accuracy:.2f}% | {r.macro_f1:.4f} | {r.loss:.4f} |")
    return lines + (["", *results.notes] if results.notes else [])


def class_tables(results) -> list[str]:
    """The per-class tables of Testing, full and leak-free."""
    lines = []
    for r, title in ((results.test, "Full Testing split"), (results.test_leak_free, "Leak-free Testing subset")):
        if r is not None:
            lines += [f"### {title}", ""] + class_table(r) + [""]
    return lines


def write_report(path: Path, sections: list[list[str]], figures: dict[str, str]) -> Path:
    """Every report.md: its sections of markdown lines in order, then the figures ({caption: file name})."""
    lines = [line for section in sections for line in section]
    for caption, file in figures.items():
        lines += [f"![{caption}]({file})", "", f"*{caption}*", ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def run_report(run: Path, config: Config, results, figures: dict[str, str], study: Study) -> Path:
    """A run's report.md: its settings and data, Testing, the other collections, per-class tables,
    the epochs; every number from config.json, metrics.jsonl and the results."""
    record = json.loads((run / "config.json").read_text())
    settings, data, env, epochs = record["config"], record["data"], record["environment"], read_epochs(run)
    extra = data.get("extra", data.get("weak", 0))  # "weak": how run folders before the study seam said it
    also = f" and {extra} {study.extra_images(config)};" if extra else ","
    intro = [
        f"# Run {settings['name']}",
        "",
        f"{settings['model']} at {results.input_size} px, {len(epochs)} epochs, batch {settings['batch_size']}, "
        f"lr {settings['lr']} ({settings['schedule']} schedule), weights {settings['weights']}; "
        f"commit `{record['commit']}`, device {env['device']}, torch {env['torch']}.",
        f"Data: {data['train'] - extra} training and {data['val']} validation images (both from Training){also} "
        f"{data['test']} Testing images, {data['leak_free_test']} of them leak-free.",
        "",
        "## Testing, on the best checkpoint (chosen on validation accuracy)",
        "",
    ]
    best = results.about
    chosen = [f"Best epoch: {best['best_epoch']}, validation accuracy {100 * best['val_accuracy']:.2f}%.", ""]
    training = [
        "## Training",
        "",
        "Training loss and accuracy are running figures over each epoch's augmented batches (loss with label "
        "smoothing); validation is measured after the epoch, in eval mode, on centre crops.",
        "",
        "| epoch | lr | train loss | train acc | val loss | val acc | img/s | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in epochs:
        training.append(
            f"| {e['epoch']} | {e['lr']:.1e} | {e['train_loss']:.4f} | {100 * e['train_accuracy']:.2f}% | "
            f"{e['val_loss']:.4f} | {100 * e['val_accuracy']:.2f}% | {e['images_per_s']:.1f} | {e['seconds']:.1f} |"
        )
    cost = results.about.get("training_cost")
    if cost:
        training += [
            "",
            f"Training cost: {cost['multiply_adds'] / 1e12:.1f} T multiply-adds (forward and backward), "
            f"{cost['relative']:.2f} times the 128 px recipe's. It took {cost['minutes']:.1f} min at "
            f"{cost['images_per_s']:.0f} img/s on this machine; the multiply-adds are the same on any machine. "
            f"Evaluation costs {cost['eval_multiply_adds_per_image'] / 1e9:.2f} G multiply-adds per image.",
        ]
    sections = [intro, testing_table(results) + [""], chosen, study.report_section(results.external, True)]
    return write_report(run / "report.md", sections + [class_tables(results), training + [""]], figures)


def evaluation_report(out: Path, results, figures: dict[str, str], study: Study) -> Path:
    """report.md of an evaluation: what was scored, Testing, the other sets, per-class tables."""
    about = results.about
    crop = ", head-cropped" if about["head_crop"] else ""
    crop += {"image": ", normalised per image", "equalize": ", histogram-equalised"}.get(about.get("normalize"), "")
    crop += ", in grey" if about.get("grey") else ""
    crop += ", each averaged with its mirror image (flip TTA)" if about.get("tta_flip") else ""
    intro = [f"# Evaluation of {about['checkpoint']}", "", f"Input {results.input_size} px{crop}.", ""]
    testing = ["## Testing", ""] + testing_table(results) + [""] if results.test is not None else []
    sections = [intro, testing, study.report_section(results.external, False), class_tables(results)]
    return write_report(out / "report.md", sections, figures)
