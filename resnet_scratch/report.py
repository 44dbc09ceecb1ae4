"""The run report: report.md with training curves, confusion matrices and a grid of test images.

Plots are written with matplotlib's Agg backend (no display needed) next to the run's metrics.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .checkpoint import read_epochs  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(run: Path) -> Path:
    """Loss and accuracy per epoch, train vs validation: curves.png."""
    lines = read_epochs(run)
    epochs = [l["epoch"] + 1 for l in lines]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [l["train_loss"] for l in lines], "o-", label="train")
    ax_loss.plot(epochs, [l["val_loss"] for l in lines], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * l["train_accuracy"] for l in lines], "o-", label="train")
    ax_acc.plot(epochs, [100 * l["val_accuracy"] for l in lines], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, run / "curves.png")


def plot_confusion(run: Path, results: dict, classes: list[str]) -> Path:
    """Confusion matrices on the full Testing split and the leak-free subset: confusion.png."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (key, title) in zip(axes, (("test", "Testing (full)"), ("test_leak_free", "Testing (leak-free)"))):
        cm = np.array(results[key]["confusion_matrix"], dtype=float)
        rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if rates[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted", ylabel="true",
               title=f"{title}: {100 * results[key]['accuracy']:.2f}% of {results[key]['samples']}")
    return save_figure(fig, run / "confusion.png")


def plot_predictions(run: Path, images: Tensor, labels: Tensor, logits: Tensor, classes: list[str],
                     count: int = 24) -> Path:
    """A grid of Testing images with predicted and true class, mistakes first: predictions.png."""
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
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen):
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        ok = predicted[i] == labels[i]
        ax.set_title(f"{classes[predicted[i]]} {100 * probabilities[i, predicted[i]]:.0f}%\ntrue: {classes[labels[i]]}",
                     fontsize=8, color="green" if ok else "red")
    fig.suptitle(f"Testing images: {len(wrong)} mistakes of {len(labels)} (red, most confident first), then correct ones", fontsize=10)
    return save_figure(fig, run / "predictions.png", dpi=100)


def plot_grad_cam(run: Path, model: torch.nn.Module, images: Tensor, labels: Tensor, logits: Tensor,
                  classes: list[str], size: int, count: int = 4) -> Path:
    """Grad-CAM overlays of a few correct and a few wrong Testing predictions: gradcam.png."""
    from .data.transforms import eval_transform
    from .explain import grad_cam, overlay
    from .predict import unnormalize

    predicted = logits.argmax(1)
    wrong = torch.nonzero(predicted != labels).flatten()[:count].tolist()
    right = torch.nonzero(predicted == labels).flatten()
    right = right[torch.randperm(len(right), generator=torch.Generator().manual_seed(0))[:count]].tolist()
    chosen = right + wrong
    device = next(model.parameters()).device
    batch = eval_transform(images[chosen].to(device), size)
    heatmaps, _ = grad_cam(model, batch)
    shown = unnormalize(batch)
    fig, axes = plt.subplots(2, max(len(chosen), 1), figsize=(2.2 * max(len(chosen), 1), 4.8), squeeze=False)
    for col, i in enumerate(chosen):
        axes[0, col].imshow(shown[col].permute(1, 2, 0).numpy())
        axes[1, col].imshow(overlay(shown[col], heatmaps[col].cpu()).numpy())
        ok = predicted[i] == labels[i]
        axes[0, col].set_title(f"{classes[predicted[i]]}\ntrue: {classes[labels[i]]}", fontsize=8,
                               color="green" if ok else "red")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Grad-CAM on the last stage: correct (green) and wrong (red) Testing predictions", fontsize=10)
    return save_figure(fig, run / "gradcam.png", dpi=100)


def _class_table(result: dict) -> list[str]:
    lines = ["| class | precision | recall | F1 | images |", "|---|---:|---:|---:|---:|"]
    for name, v in result["per_class"].items():
        lines.append(f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    return lines


def write_report(run: Path, data, logits: Tensor, results: dict, model: torch.nn.Module | None = None) -> Path:
    """report.md with every number from metrics.json / metrics.jsonl and the three plots."""
    classes = data.test.classes
    plot_curves(run)
    plot_confusion(run, results, classes)
    plot_predictions(run, data.test.images, data.test.labels, logits, classes)
    if model is not None:
        plot_grad_cam(run, model, data.test.images, data.test.labels, logits, classes, results["input_size"])
    config = json.loads((run / "config.json").read_text())
    settings = config["config"]
    epochs = read_epochs(run)
    lines = [
        f"# Run {settings['name']}",
        "",
        f"{settings['model']} at {results['input_size']} px, "
        f"{len(epochs)} epochs, batch {settings['batch_size']}, lr {settings['lr']}, weights {settings['weights']}; "
        f"commit `{config['commit']}`, device {config['environment']['device']}, torch {config['environment']['torch']}.",
        f"Data: {config['data']['train']} training and {config['data']['val']} validation images (both from "
        f"Training), {config['data']['test']} Testing images, {config['data']['leak_free_test']} of them leak-free.",
        "",
        "## Testing, on the best checkpoint (chosen on validation accuracy)",
        "",
        "| split | images | accuracy | macro F1 | loss |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, title in (("test", "full"), ("test_leak_free", "leak-free")):
        r = results[key]
        lines.append(f"| {title} | {r['samples']} | {100 * r['accuracy']:.2f}% | {r['macro_f1']:.4f} | {r['loss']:.4f} |")
    lines += ["", f"Best epoch: {results['best_epoch'] + 1}, validation accuracy {100 * results['val_accuracy']:.2f}%.", ""]
    for key, title in (("test", "Full Testing split"), ("test_leak_free", "Leak-free Testing subset")):
        lines += [f"### {title}", ""] + _class_table(results[key]) + [""]
    lines += ["![confusion matrices](confusion.png)", "", "## Training", "",
              "| epoch | lr | train loss | train acc | val loss | val acc | img/s | seconds |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in epochs:
        lines.append(f"| {e['epoch'] + 1} | {e['lr']:.1e} | {e['train_loss']:.4f} | {100 * e['train_accuracy']:.2f}% | "
                     f"{e['val_loss']:.4f} | {100 * e['val_accuracy']:.2f}% | {e['images_per_s']:.1f} | {e['seconds']:.1f} |")
    lines += ["", "![training curves](curves.png)", "", "## Testing images", "", "![predictions](predictions.png)", ""]
    if model is not None:
        lines += ["## Where the model looks (Grad-CAM)", "", "![Grad-CAM](gradcam.png)", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
