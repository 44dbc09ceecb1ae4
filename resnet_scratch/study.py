"""The seams where a particular study plugs into the generic trainer and scorer.

The core (models, data, config, train, checkpoint, predictor, evaluate, report) trains and scores any
folder-of-classes dataset. A study subclasses Study and overrides only what it adds: images added to
training, the loss, what a checkpoint records, which rows of another collection are scored, extra
metrics, and how its sets are reported. This base adds nothing. resnet_scratch/studies/ holds the
studies; the core never imports them (tests/test_structure.py checks it).
"""

from pathlib import Path

import numpy as np

from .config import Config, ConfigError
from .data.cache import Split
from .loss import CrossEntropy


class Study:
    """A generic run: cross-entropy on the dataset's own classes; other sets scored by accuracy and
    per-class recall where their class is one of the model's."""

    def extra_training(self, config: Config, train: Split) -> tuple[Split, int]:
        """Training with images appended after its own (and how many): none here. A setting that only a
        study reads is refused here, so that it is never dropped without a word."""
        if config.weak_tumour:
            raise ConfigError(
                f"weak_tumour = {config.weak_tumour!r} is a setting of the brain-MRI study: "
                "fit(config, study=BrainMRI()) (resnet_scratch.studies.brain_mri) reads it"
            )
        return train, 0

    def extra_images(self, config: Config) -> str:
        """What the images added to training are, for the console and the report."""
        return "images added by the study"

    def loss(self, config: Config, classes: list[str], extra: int) -> CrossEntropy:
        """The training loss, given the classes and the number of appended training images."""
        return CrossEntropy(config.label_smoothing, config.aux_weight)

    def checkpoint_extra(self, config: Config) -> dict[str, object]:
        """What a checkpoint records beyond the model and its preprocessing."""
        return {}

    def rows_to_score(
        self, meta: dict[str, object], folder: Path, split: Split, rows: np.ndarray
    ) -> tuple[np.ndarray, str | None]:
        """The rows of another collection to score, and a note when that is not all of them."""
        return rows, None

    def set_metrics(self, truth: list[str], predicted: list[str], classes: list[str]) -> dict[str, object]:
        """Metrics of a scored set beyond accuracy and per-class recall."""
        return {}

    def mistaken(self, truth: str, predicted: str, classes: list[str]) -> bool:
        """Whether a prediction is a mistake (for the figures of the most confident mistakes)."""
        return truth in classes and predicted != truth

    def set_line(self, name: str, r: dict[str, object]) -> str:
        """One line per scored set, for the terminal."""
        recall = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items())
        parts = [f"{name}: {r['images']} images" + (f" ({r['scored_only']})" if r.get("scored_only") else "")]
        if r["accuracy"] is not None:
            parts.append(f"accuracy {r['accuracy']:.4f} ({recall})")
        return "; ".join(parts + self.metric_parts(r))

    def metric_parts(self, r: dict[str, object]) -> list[str]:
        """The set_metrics part of a set's terminal line."""
        return []

    def report_section(self, sets: dict[str, dict], after_training: bool) -> list[str]:
        """The report's section on the other scored sets (markdown lines): after a run's training, or in
        an evaluation of folders a user named."""
        if not sets:
            return []
        title = "## Other collections" if after_training else "## Labelled folders"
        lines = [title, "", "| set | images | accuracy (known class) | recall per class |"]
        lines.append("|---|---:|---:|---|")
        for name, r in sets.items():
            recall = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items()) or "-"
            lines.append(f"| {name} | {r['images']} | {fmt_share(r.get('accuracy'))} | {recall} |")
        return lines + [""]


def fmt_share(value: float | None) -> str:
    """A fraction as a percentage with two decimals, or "-" where it does not apply."""
    return "-" if value is None else f"{100 * value:.2f}%"
