"""Running a trained model over decoded images: logits of a store's rows under eval preprocessing,
on the device the store lives on, and the classification report of those logits."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data import Split
from .data.transforms import eval_transform
from .metrics import classification_report


@dataclass(frozen=True)
class Preprocess:
    """How a model's inputs are made and run: input size, normalisation, precision and layout."""

    size: int
    mean: tuple[float, ...]  # no default: the normalisation is the checkpoint's (or the model record's)
    std: tuple[float, ...]
    bf16: bool = False
    channels_last: bool = True

    @classmethod
    def of_checkpoint(cls, meta: dict[str, object], bf16: bool = False) -> "Preprocess":
        """The preprocessing a checkpoint's metadata records (its input size and normalisation)."""
        return cls(int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]), bf16)

    def batch(self, images: Tensor, rows: Tensor) -> Tensor:
        """images[rows] resized, centre-cropped and normalised, in the model's layout."""
        x = eval_transform(images, self.size, rows=rows, mean=self.mean, std=self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@torch.no_grad()
def logits_of(
    model: nn.Module, images: Tensor, rows: np.ndarray | Tensor, prep: Preprocess, batch_size: int = 128
) -> Tensor:
    """Logits (float32, on the CPU) of images[rows], in order. `images` (a decoded uint8 store) lives
    where the model does: batches are read from it there, and only the logits come back."""
    model.eval()
    device = images.device
    rows = torch.as_tensor(rows, dtype=torch.long, device=device)
    outputs = []
    for start in range(0, len(rows), batch_size):
        x = prep.batch(images, rows[start : start + batch_size])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=prep.bf16):
            outputs.append(model(x).float())
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs).cpu()


def report_on(logits: Tensor, target: Tensor, classes: list[str]) -> dict[str, object]:
    """Classification report plus the (unsmoothed) cross-entropy loss."""
    target = target.cpu()
    if len(target) == 0:
        raise ValueError("no images to report on")
    report = classification_report(logits, target, classes)
    report["loss"] = float(F.cross_entropy(logits, target))
    return report


def evaluate(model: nn.Module, split: Split, rows: np.ndarray, prep: Preprocess) -> dict[str, object]:
    """Loss and the classification report on split rows `rows`."""
    logits = logits_of(model, split.images, rows, prep)
    return report_on(
        logits, split.labels[torch.as_tensor(rows, dtype=torch.long, device=split.labels.device)], split.classes
    )
