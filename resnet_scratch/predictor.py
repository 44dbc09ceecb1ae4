"""The one path from a trained model to a number: a Predictor holds the model, its classes, all of its
preprocessing (size, normalisation, head crop) and one precision policy; Scores is what scoring returns.

The final test after training, `evaluate` and `predict` score through it, so one image file gets the
same probabilities from `evaluate` (a folder of class folders) and `predict` (tests/test_external.py).
Validation during training runs logits_of with the same Preprocess. A dataset's Testing split is
stored at its own size and resized on the fly, as in training, so its pixels can differ slightly
from a file's through predict.
"""

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .checkpoint import model_from_checkpoint
from .data.folder import crop_to_head
from .data.transforms import eval_resize, eval_transform, fit_to, unnormalize
from .metrics import classification_report
from .runtime import bf16_supported, resolve_device


@dataclass(frozen=True)
class Preprocess:
    """How a model's inputs are made and run: input size, normalisation, head crop, precision, layout."""

    size: int
    mean: tuple[float, ...]  # no default: the normalisation is the checkpoint's (or the model record's)
    std: tuple[float, ...]
    bf16: bool = False
    channels_last: bool = True
    head_crop: bool = False
    normalize: str = "fixed"  # data.transforms.finish: "fixed", "image" or "equalize"
    grey: bool = False
    tta_flip: bool = False  # logits averaged over each image and its mirror image

    @classmethod
    def of_checkpoint(cls, meta: dict[str, object], bf16: bool = False, channels_last: bool = True) -> "Preprocess":
        """The preprocessing a checkpoint's metadata records (input size, normalisation, head crop, grey)."""
        return cls(
            int(meta["input_size"]),
            tuple(meta["mean"]),
            tuple(meta["std"]),
            bf16,
            channels_last,
            bool(meta["head_crop"]),
            str(meta.get("normalize", "fixed")),
            bool(meta.get("grey", False)),
            bool(meta.get("tta_flip", False)),
        )

    def shown(self, batch: Tensor) -> Tensor:
        """A batch of this preprocessing's inputs as 0..1 pixels on the CPU, for display."""
        return unnormalize(batch, self.mean, self.std, self.normalize)

    @property
    def store_side(self) -> int:
        """The side images are stored at before the centre crop (evaluation's resize)."""
        return eval_resize(self.size)

    def image(self, pixels: np.ndarray) -> Tensor:
        """One decoded H x W x 3 uint8 image -> 3 x side x side uint8, as a store of this preprocessing holds it."""
        if self.head_crop:
            pixels = crop_to_head(pixels)
        side = self.store_side
        return torch.from_numpy(np.ascontiguousarray(fit_to(pixels, side, side))).permute(2, 0, 1)

    def batch(self, images: Tensor, rows: Tensor) -> Tensor:
        """images[rows] resized, centre-cropped and normalised, in the model's layout."""
        x = eval_transform(
            images, self.size, rows=rows, mean=self.mean, std=self.std, normalize=self.normalize, grey=self.grey
        )
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@dataclass
class Predictor:
    """A model loaded from a checkpoint with everything needed to run it as it was trained to be run."""

    model: nn.Module
    classes: list[str]
    prep: Preprocess
    device: torch.device
    meta: dict[str, object]

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        device: str | torch.device = "auto",
        bf16: bool | None = None,
        channels_last: bool = True,
        tta_flip: bool | None = None,
    ) -> "Predictor":
        """The checkpoint's model on `device`; bf16: autocast to bfloat16 (None: where the device supports it);
        tta_flip: average each image with its mirror image or not (None: as the checkpoint records)."""
        model, meta = model_from_checkpoint(checkpoint)
        device = resolve_device(device) if isinstance(device, str) else device
        bf16 = bf16_supported(device) if bf16 is None else bf16 and bf16_supported(device)
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        prep = Preprocess.of_checkpoint(meta, bf16, channels_last)
        prep = prep if tta_flip is None else replace(prep, tta_flip=tta_flip)
        return cls(model, list(meta["classes"]), prep, device, meta)

    def logits(self, images: Tensor, rows: np.ndarray | Tensor | None = None) -> Tensor:
        """Logits of a decoded store's rows (all of them by default), float32 on the CPU."""
        rows = np.arange(len(images)) if rows is None else rows
        logits = logits_of(self.model, images.to(self.device), rows, self.prep)
        if not torch.isfinite(logits).all():  # finite weights can still overflow: no answer, not a NaN one
            raise ValueError("the model's outputs hold NaN or infinite values: its weights overflow in this precision")
        return logits


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
            out = model(x).float()
            if prep.tta_flip:  # the slices have no left and right that matters: training flips them too
                out = (out + model(x.flip(-1)).float()) / 2
        outputs.append(out)
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs).cpu()


@dataclass(frozen=True)
class Scores:
    """The classification report of labelled images: accuracy, per-class P/R/F1, confusion, top-k, loss."""

    samples: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    top_k: dict[int, float] = field(default_factory=dict)  # k -> top-k accuracy, for 2 <= k < classes
    loss: float = float("nan")  # unsmoothed cross-entropy

    def as_dict(self) -> dict[str, object]:
        """The JSON form of metrics.json (top-k as top{k}_accuracy keys)."""
        d = asdict(self)
        top = d.pop("top_k")
        loss = d.pop("loss")
        return d | {f"top{k}_accuracy": v for k, v in top.items()} | {"loss": loss}

    @property
    def classes(self) -> list[str]:
        return list(self.per_class)


def score(logits: Tensor, target: Tensor, classes: list[str]) -> Scores:
    """Scores of logits against their true class indices."""
    target = target.cpu()
    if len(target) == 0:
        raise ValueError("no images to score")
    report = classification_report(logits, target, classes)
    top = {k: report.pop(f"top{k}_accuracy") for k in range(2, len(classes))}
    return Scores(**report, top_k=top, loss=float(F.cross_entropy(logits, target)))
