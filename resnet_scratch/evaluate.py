"""Evaluate a saved checkpoint on a dataset's Testing split, outside of a training run."""

import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_text
from .config import Config
from .data import load_split
from .train import leak_free_rows, model_from_checkpoint, predict, report_on, resolve_device


def evaluate_checkpoint(checkpoint: Path, data: Path, out: Path | None = None, clean_list: Path | None = None) -> dict:
    """Accuracy, per-class P/R/F1 and confusion matrices on Testing (full and leak-free) -> out/."""
    model, meta = model_from_checkpoint(checkpoint)
    train = load_split(Path(data), "Training")
    if train.classes != meta["classes"]:
        raise ValueError(f"{data} has classes {train.classes}, the checkpoint was trained on {meta['classes']}")
    test = load_split(Path(data), "Testing", classes=train.classes)
    leak_free = leak_free_rows(train, test, Path(data), clean_list)
    device = resolve_device("auto")
    config = Config(model=meta["arch"])  # inference settings: bf16 where fast, channels_last
    model = model.to(device).to(memory_format=torch.channels_last)
    logits = predict(model, test, np.arange(len(test)), meta["input_size"], config, device)
    results = {
        "checkpoint": str(checkpoint), "input_size": meta["input_size"],
        "test": report_on(logits, test.labels, test.classes),
        "test_leak_free": report_on(logits[leak_free], test.labels[leak_free], test.classes),
    }
    out = Path(out) if out else Path(checkpoint).parent / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=1))
    from .report import plot_confusion, plot_predictions

    plot_confusion(out, results, test.classes)
    plot_predictions(out, test.images, test.labels, logits, test.classes)
    for name, key in (("Testing (full)", "test"), ("Testing (leak-free)", "test_leak_free")):
        r = results[key]
        print(f"{name}: accuracy {r['accuracy']:.4f} on {r['samples']} images, macro F1 {r['macro_f1']:.4f}")
    print(f"wrote {out / 'metrics.json'}, {out / 'confusion.png'}, {out / 'predictions.png'}")
    return results
