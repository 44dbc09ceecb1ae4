"""What one training run trains, validates and tests on: the decoded splits, a validation split
carved from Training along groups of near duplicates, the leak-free Testing rows, and (optionally)
images a study adds to training (RunData.with_extra)."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audit import HAMMING_THRESHOLD, duplicate_groups, leak_free_indices
from .cache import Split, load_split


@dataclass
class RunData:
    """What one run trains and tests on. train holds Training (and a study's extra images after it);
    train_rows and val_rows index it; the extra images are all in train_rows."""

    train: Split
    test: Split
    train_rows: np.ndarray
    val_rows: np.ndarray
    leak_free_rows: np.ndarray
    extra_count: int = 0
    train_eval_rows: np.ndarray | None = None  # training rows scored like validation (config.train_eval)

    def with_extra(self, train: Split, extra: int) -> None:
        """Take `train`: the same Training with `extra` images appended, all of them for training only."""
        self.train, self.extra_count = train, extra
        self.train_rows = np.concatenate([self.train_rows, np.arange(len(train) - extra, len(train))])


def read_clean_list(path: Path) -> set[str]:
    """The paths of a clean list (audit --write-clean-list), byte for byte: a name that is not valid
    UTF-8 reads back as the str the scan produced for it."""
    return {os.fsdecode(line) for line in Path(path).read_bytes().splitlines() if line.strip()}


def write_clean_list(path: Path, paths: list[str]) -> None:
    """A clean list, one path per line, written atomically; names that are not valid UTF-8 keep their bytes."""
    from ..files import atomic_write_bytes

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), b"".join(os.fsencode(p) + b"\n" for p in paths))


def clean_rows(split: Split, folder: Path, clean_list: Path) -> np.ndarray:
    """Rows of `split` (decoded from `folder`) named in `clean_list`, whose paths are relative to the
    folder's parent; a list that names none of them is an error, not an empty subset."""
    listed = read_clean_list(clean_list)
    base = Path(folder).parent
    rows = np.array([i for i, p in enumerate(split.paths) if str(Path(p).relative_to(base)) in listed], dtype=np.int64)
    if len(rows) == 0:
        raise ValueError(
            f"clean list {clean_list} names none of the {len(split)} images in {folder} "
            f"(its paths must be relative to {base}, e.g. {Path(split.paths[0]).relative_to(base)})"
        )
    return rows


def leak_free_rows(
    train: Split, test: Split, root: Path, clean_list: str | Path | None, hashes: dict | None = None
) -> np.ndarray:
    """Testing rows without a copy in Training: from a clean list (audit --write-clean-list, paths
    relative to root) when one is given, else computed as the audit does."""
    if clean_list:
        return clean_rows(test, Path(root) / test.name, Path(clean_list))
    return np.array(leak_free_indices(train, test, hashes=hashes), dtype=np.int64)


def train_val_split(
    labels: torch.Tensor, groups: list, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): stratified by class, seeded, groups kept together.

    groups[i] names the group of sample i (exact and near duplicates: audit.duplicate_groups); all
    members of a group land on the same side, so validation never scores an image the model trained
    on, nor a near copy of one (within the audit's pHash threshold). Each class gets
    round(fraction * its size) validation samples, give or take a group.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    labels_np = labels.cpu().numpy()
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(labels_np):
        # A group belongs to the class of its first member (a label conflict is the audit's to report).
        class_groups = [m for m in members.values() if labels_np[m[0]] == label]
        target = round(fraction * sum(len(m) for m in class_groups))
        taken = 0
        for k in rng.permutation(len(class_groups)):
            if taken >= target:
                break
            val += class_groups[k]
            taken += len(class_groups[k])
    val_idx = np.sort(np.array(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels_np)), val_idx)
    return train_idx, val_idx


def subsample(rows: np.ndarray, labels: torch.Tensor, fraction: float, seed: int) -> np.ndarray:
    """A seeded, class-stratified `fraction` of `rows` (at least one image per class)."""
    if fraction >= 1.0:
        return rows
    rng = np.random.default_rng([seed, 1])
    labels_np = labels.cpu().numpy()[rows]
    kept = [
        rng.choice(rows[labels_np == c], max(1, round(fraction * (labels_np == c).sum())), replace=False)
        for c in np.unique(labels_np)
    ]
    return np.sort(np.concatenate(kept))


def load_run_data(
    root: Path,
    *,
    val_fraction: float,
    seed: int,
    cache_dir: str | None = None,
    clean_list: str | None = None,
    head_crop: bool = False,
    train_fraction: float = 1.0,
) -> RunData:
    """Decode both splits, carve the validation split, find the leak-free Testing rows."""
    root = Path(root)
    train = load_split(root, "Training", cache_dir=cache_dir, head_crop=head_crop)
    test = load_split(root, "Testing", classes=train.classes, cache_dir=cache_dir, head_crop=head_crop)
    hashes: dict = {}  # shared by the grouping and the leak check
    groups = duplicate_groups(train, HAMMING_THRESHOLD, hashes)
    train_rows, val_rows = train_val_split(train.labels, groups, val_fraction, seed)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(
            f"val_fraction {val_fraction} leaves {len(train_rows)} training and {len(val_rows)} "
            f"validation images of {len(train)}: choose a fraction that leaves both sides some"
        )
    train_rows = subsample(train_rows, train.labels, train_fraction, seed)
    leak_free = leak_free_rows(train, test, root, clean_list, hashes)
    rng = np.random.default_rng([seed, 2])
    train_eval_rows = np.sort(rng.choice(train_rows, min(len(val_rows), len(train_rows)), replace=False))
    return RunData(train, test, train_rows, val_rows, leak_free, 0, train_eval_rows)
