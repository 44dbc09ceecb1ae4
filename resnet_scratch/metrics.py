"""Classification metrics from predictions and labels: accuracy, confusion matrix, P/R/F1, top-k."""

import torch
from torch import Tensor


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """C x C counts: row = true class, column = predicted class."""
    index = target.long() * num_classes + predicted.long()
    return torch.bincount(index.cpu(), minlength=num_classes * num_classes).view(num_classes, num_classes)


def classification_report(logits: Tensor, target: Tensor, classes: list[str]) -> dict[str, object]:
    """Accuracy, per-class precision / recall / F1 and support, macro F1, the confusion matrix,
    and top-k accuracy for every k from 2 up to (not including) the number of classes."""
    n = len(classes)
    predicted = logits.argmax(1)
    cm = confusion_matrix(predicted, target, n).double()
    true_positive = cm.diag()
    support = cm.sum(1)
    predicted_count = cm.sum(0)
    precision = torch.where(
        predicted_count > 0, true_positive / predicted_count.clamp(min=1), torch.zeros(n, dtype=torch.float64)
    )
    recall = torch.where(support > 0, true_positive / support.clamp(min=1), torch.zeros(n, dtype=torch.float64))
    f1 = torch.where(
        precision + recall > 0,
        2 * precision * recall / (precision + recall).clamp(min=1e-12),
        torch.zeros(n, dtype=torch.float64),
    )
    report: dict[str, object] = {
        "samples": int(len(target)),
        "accuracy": float(true_positive.sum() / max(len(target), 1)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.long().tolist(),
    }
    ranked = logits.topk(min(n - 1, logits.shape[1]) if n > 2 else 1, dim=1).indices
    for k in range(2, n):  # top-k only where k < classes: top-n is trivially 100%
        report[f"top{k}_accuracy"] = float((ranked[:, :k] == target[:, None]).any(1).double().mean())
    return report
