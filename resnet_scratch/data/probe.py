"""The shortcut probe: how much of the label a linear model reads off features too coarse to show
a tumour's shape.

Each image becomes an 8 x 8 grey thumbnail (the slice's framing, orientation and overall layout)
and a 16-bin intensity histogram (its contrast: T1 with contrast agent, T2, FLAIR ...): 80 numbers
that describe the kind of scan, not a lesion of a few pixels (a large enhancing tumour can still
shift the histogram or a thumbnail cell). A multinomial logistic regression on them, cross-validated
on Training along groups of near duplicates and then scored on Testing, measures how far a class can
be told apart by the kind of scan. A CNN sees all of this and more: the probe's accuracy is a rough
measure of what a network can learn from the kind of scan alone, not a bound.
"""

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from .audit import duplicate_groups
from .cache import Split

THUMBNAIL, BINS = 8, 16


def scan_features(images: Tensor, chunk: int = 512) -> Tensor:
    """N x 80 float64: an 8 x 8 grey thumbnail (0..1) and a 16-bin intensity histogram (fractions)."""
    rows = []
    for start in range(0, len(images), chunk):
        grey = images[start : start + chunk].float().mean(1, keepdim=True) / 255  # N x 1 x H x W
        thumb = F.interpolate(grey, size=(THUMBNAIL, THUMBNAIL), mode="bilinear", antialias=True, align_corners=False)
        bins = (grey.flatten(1) * BINS).long().clamp(max=BINS - 1)
        hist = torch.zeros(len(grey), BINS).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float32))
        rows.append(torch.cat([thumb.flatten(1), hist / grey[0].numel()], 1))
    return torch.cat(rows).double()


def fit_linear(x: Tensor, y: Tensor, num_classes: int, weight_decay: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """(weights, feature mean, feature std) of an L2-regularised multinomial logistic regression."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1] + 1, num_classes, dtype=torch.float64, requires_grad=True)
    design = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], 1)
    optimizer = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(design @ w, y) + weight_decay * w[:-1].square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), mean, std


def predict_linear(model: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
    """Predicted classes of features x under fit_linear's model."""
    w, mean, std = model
    z = (x - mean) / std
    return (torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], 1) @ w).argmax(1)


def recalls(predicted: Tensor, target: Tensor, classes: list[str]) -> dict[str, float]:
    """Per-class recall: the share of each class's images predicted as that class."""
    return {
        c: float((predicted[target == i] == i).double().mean()) if (target == i).any() else float("nan")
        for i, c in enumerate(classes)
    }


def shortcut_probe(train: Split, test: Split | None = None, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated accuracy (and per-class recall) of the probe on `train`, and its accuracy on
    `test` after fitting on all of `train`; chance is the largest class's share."""
    x, y = scan_features(train.images), train.labels.cpu()
    # Folds along groups of near duplicates (a copy in the training folds would flatter the probe),
    # stratified by the group's class.
    groups = np.array(duplicate_groups(train))
    fold_of = np.empty(len(y), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for label in range(len(train.classes)):
        heads = rng.permutation(np.unique(groups[y.numpy() == label]))
        for k, group in enumerate(heads):
            fold_of[groups == group] = k % folds
    predicted = torch.empty_like(y)
    for k in range(folds):
        held = torch.from_numpy(fold_of == k)
        model = fit_linear(x[~held], y[~held], len(train.classes))
        predicted[held] = predict_linear(model, x[held])
    report = {
        "features": f"{THUMBNAIL}x{THUMBNAIL} grey thumbnail + {BINS}-bin intensity histogram",
        "folds": folds,
        "chance": float(torch.bincount(y).max() / len(y)),
        "cv_accuracy": float((predicted == y).double().mean()),
        "cv_recall": recalls(predicted, y, train.classes),
    }
    if test is not None:
        model = fit_linear(x, y, len(train.classes))
        test_y = test.labels.cpu()
        test_predicted = predict_linear(model, scan_features(test.images))
        report |= {
            "test_accuracy": float((test_predicted == test_y).double().mean()),
            "test_recall": recalls(test_predicted, test_y, test.classes),
        }
    return report
