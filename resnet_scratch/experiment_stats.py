"""The statistics of experiments: mean and spread over seeds, the noise margin of an accuracy, an
external set's headline figure, and a model's training cost in multiply-adds."""

import numpy as np
import torch

from .config import Config
from .models import build
from .summary import count_macs

# The validation split (10% of Training's 5,712 images): what the ablations' accuracies are measured on.
VAL_IMAGES = 570


def noise_margin(error: float, n: int = VAL_IMAGES) -> float:
    """Points by which two error rates near `error` (a fraction), each measured on n images, can differ
    from sampling alone: two standard errors of the difference of two independent accuracies (2.6 points
    at 5% error, 4.6 at 18%), a rough bar that sampling crosses about one time in twenty. The ablations
    count a difference only above it; noise from training itself is judged by asking every seed to agree."""
    return 200 * float(np.sqrt(2 * error * (1 - error) / n))


def external_headline(result: dict) -> dict[str, object]:
    """What an external set's row shows: accuracy where its classes are known, else tumour sensitivity."""
    if result["accuracy"] is not None:
        return {"metric": "accuracy", "value": result["accuracy"], "images": result["images"]}
    return {"metric": "tumour sensitivity", "value": result["tumour_sensitivity"], "images": result["images"]}


def mean_std(values: list[float]) -> dict[str, object]:
    """Mean and sample standard deviation (0 for a single value) of per-seed numbers."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": a.tolist()}


def model_cost(config: Config) -> dict[str, object]:
    """Parameters and forward multiply-adds (eval mode, one image) of the arm's model at its input size."""
    size = config.input_size
    with torch.device("meta"):
        model = build(config.model, num_classes=4, **config.model_options())
    macs, _ = count_macs(model.eval(), size)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": macs, "input_size": size}
