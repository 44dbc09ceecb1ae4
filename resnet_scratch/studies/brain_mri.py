"""The brain-MRI study: weak labels from other collections, tumour sensitivity, and how its
external collections (../shared/data/external: Br35H, Sartaj) are scored and reported.

Why it exists: brain-tumor-mri's no-tumour class comes from one collection and its tumour classes
from others, so a model can tell "no tumour" by the kind of scan (docs/data.md). Scoring other
collections measures that; weak labels ("a tumour, type unknown") are one remedy tried against it.

It plugs into the core through resnet_scratch.study.Study:
- extra_training: half of a folder of tumour slices (by a hash of each file name), labelled WEAK;
- loss: for WEAK rows, the partial-label loss -log(p_glioma + p_meningioma + p_pituitary);
- checkpoint_extra / rows_to_score: a checkpoint records the folder it trained on half of, and that
  folder is then scored on its held-out half only;
- set_metrics, metric_parts, report_section: tumour sensitivity and specificity beside accuracy;
- mistaken: a tumour of unknown type is a mistake when called no tumour;
- extra_images: how the console and the report name the weakly labelled images.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..config import Config
from ..data.audit import HAMMING_THRESHOLD, duplicate_groups
from ..data.cache import Split, load_folder
from ..data.folder import DatasetError
from ..data.labels import ANY_TUMOUR, NO_TUMOUR, tumour_classes
from ..loss import CrossEntropy
from ..study import Study, fmt_share

# The label of a weakly labelled image: one of the tumour classes, which one unknown.
WEAK = -1
# What a weakly labelled folder is scored on when part of it was trained on (weak_held_out).
HELD_OUT = "held out: outside the trained half, and no near copy of a trained image"


def weak_folder(config: Config) -> Path | None:
    """config.weak_tumour as a folder: a relative path lies inside `external` (the working folder if
    that is none), so "br35h-tumour" follows the one setting that locates the external collections."""
    if not config.weak_tumour:
        return None
    path = Path(config.weak_tumour).expanduser()
    return path if path.is_absolute() or not config.external else Path(config.external).expanduser() / path


def weak_half(path: str) -> bool:
    """Whether a weakly labelled file is in the half that training may use: decided by a hash of its
    file name (not by a seed), so any run, and any evaluation, draws the same halves without a list."""
    return hashlib.sha256(Path(path).name.encode("utf-8", "surrogateescape")).digest()[0] % 2 == 0


def weak_held_out(split: Split, threshold: int = HAMMING_THRESHOLD) -> np.ndarray:
    """Which images of a weakly labelled folder weak-label training never saw, nor a near copy of:
    outside the trained half, in a group of duplicates (audit.duplicate_groups) with no member inside
    it. Br35H holds many near copies of its own slices, and a copy of a trained image is not held out."""
    groups = duplicate_groups(split, threshold, {})
    trained = {g for g, p in zip(groups, split.paths) if weak_half(p)}
    return np.array([not weak_half(p) and g not in trained for g, p in zip(groups, split.paths)], dtype=bool)


def add_weak(train: Split, folder: Path, cache_dir: str | None, head_crop: bool) -> tuple[Split, int]:
    """Training plus the weak half of `folder` (a folder of "tumour" class folders, e.g. Br35H's),
    labelled WEAK and stored at Training's size."""
    if not folder.is_dir():
        raise DatasetError(
            f"weak labels: {folder} is not a folder (a relative weak_tumour lies inside `external`, or the "
            "working folder if that is none); --weak-tumour none trains without them"
        )
    weak = load_folder(folder, size=tuple(train.images.shape[2:]), cache_dir=cache_dir, head_crop=head_crop)
    if set(weak.classes) != {ANY_TUMOUR} or not tumour_classes(train.classes):
        raise ValueError(
            f"weak labels: {folder} must hold one class folder named {ANY_TUMOUR!r} and the "
            f"training classes must include notumor; found {weak.classes} and {train.classes}"
        )
    keep = [i for i, p in enumerate(weak.paths) if weak_half(p)]
    if not keep:
        raise ValueError(
            f"weak labels: none of the {len(weak)} images in {folder} is in the half training may use "
            "(a subset of the held-out half, as .gpu_data carries?)"
        )
    images = torch.cat([train.images, weak.images[keep]]).contiguous(memory_format=torch.channels_last)
    labels = torch.cat([train.labels, torch.full((len(keep),), WEAK, dtype=torch.int64)])
    merged = Split(
        train.name,
        train.classes,
        images,
        labels,
        train.paths + [weak.paths[i] for i in keep],
        train.skipped + weak.skipped,
    )
    return merged, len(keep)


class PartialLabelLoss(CrossEntropy):
    """Cross-entropy, except that rows labelled WEAK take -log of their tumour classes' total
    probability (computed for every row and selected, so the step never waits on the device)."""

    def __init__(self, label_smoothing: float, aux_weight: float, tumour: list[int]) -> None:
        super().__init__(label_smoothing, aux_weight)
        self.tumour_classes = tumour
        self.on_device: dict[torch.device, Tensor] = {}

    def tumour(self, device: torch.device) -> Tensor:
        """The tumour classes' indices on `device`, copied there once (not at every step)."""
        if device not in self.on_device:
            self.on_device[device] = torch.tensor(self.tumour_classes, device=device)
        return self.on_device[device]

    def of_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        tumour = self.tumour(logits.device)
        weak = target == WEAK
        full = F.cross_entropy(logits, target.clamp(min=0), label_smoothing=self.label_smoothing, reduction="none")
        partial = torch.logsumexp(logits, 1) - torch.logsumexp(logits[:, tumour], 1)
        return torch.where(weak, partial, full).mean()

    def correct(self, logits: Tensor, target: Tensor) -> Tensor:
        """A weakly labelled image is right when called any tumour class."""
        predicted = logits.argmax(1)
        right = predicted == target
        right = torch.where(target == WEAK, torch.isin(predicted, self.tumour(predicted.device)), right)
        return right.sum()


class BrainMRI(Study):
    """The study's additions: weak labels, tumour sensitivity and specificity, held-out halves."""

    def extra_training(self, config: Config, train: Split) -> tuple[Split, int]:
        folder = weak_folder(config)
        if folder is None:
            return train, 0
        return add_weak(train, folder, config.cache_dir, config.head_crop)

    def extra_images(self, config: Config) -> str:
        return f"weakly labelled images from half of {weak_folder(config).name}"

    def loss(self, config: Config, classes: list[str], extra: int) -> CrossEntropy:
        if not extra:
            return super().loss(config, classes, extra)
        return PartialLabelLoss(config.label_smoothing, config.aux_weight, tumour_classes(classes))

    def checkpoint_extra(self, config: Config) -> dict[str, object]:
        folder = weak_folder(config)  # evaluate then scores that folder on its held-out part only
        return {"weak_trained_on": folder.name} if folder else {}

    def rows_to_score(
        self, meta: dict[str, object], folder: Path, split: Split, rows: np.ndarray
    ) -> tuple[np.ndarray, str | None]:
        if meta.get("weak_trained_on") != folder.name:
            return rows, None
        return rows[weak_held_out(split)[rows]], HELD_OUT

    def set_metrics(self, truth: list[str], predicted: list[str], classes: list[str]) -> dict[str, object]:
        """Tumour sensitivity (tumour images called any tumour class) and specificity (no-tumour images
        called no tumour)."""
        tumours = {classes[i] for i in tumour_classes(classes)}
        is_tumour = [i for i, t in enumerate(truth) if t in tumours or t == ANY_TUMOUR]
        healthy = [i for i, t in enumerate(truth) if t == NO_TUMOUR]
        return {
            "tumour_images": len(is_tumour),
            "tumour_sensitivity": share([predicted[i] in tumours for i in is_tumour]),
            "no_tumour_images": len(healthy),
            "specificity": share([predicted[i] == NO_TUMOUR for i in healthy]),
        }

    def mistaken(self, truth: str, predicted: str, classes: list[str]) -> bool:
        """A tumour of unknown type is mistaken when called no tumour."""
        return (truth == ANY_TUMOUR and predicted == NO_TUMOUR) or super().mistaken(truth, predicted, classes)

    def metric_parts(self, r: dict[str, object]) -> list[str]:
        parts = []
        if r["tumour_sensitivity"] is not None:
            parts.append(f"tumour sensitivity {r['tumour_sensitivity']:.4f} of {r['tumour_images']}")
        if r["specificity"] is not None:
            parts.append(f"specificity {r['specificity']:.4f} of {r['no_tumour_images']}")
        return parts

    def report_section(self, sets: dict[str, dict], after_training: bool) -> list[str]:
        if not sets:
            return []
        held_out = held_out_lines(sets)  # sets it trained on half of: not all unseen
        if not after_training:  # folders a user named: nothing is known of where they come from
            return ["## Labelled folders", ""] + external_lines(sets) + [""] + held_out
        return (
            [
                "## Other collections" + ("" if held_out else " (never trained on)"),
                "",
                "The same model on MRI slices from collections that share no image with brain-tumor-mri/ "
                "(../shared/data/external/README.md). Tumour sensitivity is the share of tumour slices "
                "called any tumour class; a set of tumour slices of unknown type has no per-class accuracy.",
                "",
            ]
            + external_lines(sets)
            + [""]
            + held_out
        )


def share(hits: list[bool]) -> float | None:
    """The share of True, or None for no members."""
    return sum(hits) / len(hits) if hits else None


def external_lines(external: dict[str, dict]) -> list[str]:
    """The external sets as a markdown table: images, accuracy where the class is known, per-class
    recall, tumour sensitivity and specificity."""
    if not external:
        return []
    lines = [
        "| set | images | accuracy (known class) | recall per class | tumour sensitivity | specificity |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, r in external.items():
        recall = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items()) or "-"
        cells = [
            name,
            str(r["images"]),
            fmt_share(r.get("accuracy")),
            recall,
            fmt_share(r.get("tumour_sensitivity")),
            fmt_share(r.get("specificity")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def held_out_lines(sets: dict[str, dict]) -> list[str]:
    """For each set the model trained on half of (weak labels), a paragraph saying so; none otherwise."""
    weak = [
        f"This model trained on half of {name} (weak labels: 'a tumour, type unknown'), so it is no longer a "
        f"collection it never saw; its row is the rest ({r['scored_only']})."
        for name, r in sets.items()
        if r.get("scored_only")
    ]
    return [line for text in weak for line in (text, "")]
