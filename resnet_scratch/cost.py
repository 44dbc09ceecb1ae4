"""Training cost in multiply-adds: a measure of a recipe that no machine changes.

Wall time depends on the day: the same job ran at 35 to 155 img/s on this project's CPUs. So a
recipe's cost is counted instead: every training image costs the multiply-adds of one forward pass
at that epoch's input size (summary.count_macs), times PASSES. It is reported relative to the cost of
one recipe, REFERENCE (the 128 px recipe), which is 1.00. Evaluation is counted apart, per image,
since test-time augmentation multiplies it and training does not.
"""

import torch

from .config import Config, read_toml, recipe_path
from .models import build
from .summary import count_macs

# One training step costs about three forward passes: the forward pass, then a backward pass that
# computes the gradients of the activations and of the weights, each about as costly as the forward
# (the usual estimate, e.g. Kaplan et al. 2020's 6N FLOPs per token for 2N forward).
PASSES = 3
# The unit of cost: the packaged recipe whose training costs 1.00.
REFERENCE = "resnet18_128px"
# Training less its validation split: 5,134 images per epoch on the full dataset
# (docs/results/resnet18_128px/metrics.jsonl).
EPOCH_IMAGES = 5134


def forward_macs(model: str, size: int, options: dict[str, object] | None = None, num_classes: int = 4) -> int:
    """Multiply-adds of one forward pass of one image through `model` at size x size px (on the meta
    device: nothing is computed)."""
    with torch.device("meta"):
        network = build(model, num_classes=num_classes, **(options or {}))
    return count_macs(network.eval(), size)[0]


def reference_macs() -> int:
    """The unit of cost in multiply-adds: REFERENCE's epochs x EPOCH_IMAGES x PASSES forward passes."""
    recipe = read_toml(recipe_path(REFERENCE))
    forward = forward_macs(str(recipe["model"]), int(recipe["image_size"]))
    return int(recipe["epochs"]) * EPOCH_IMAGES * PASSES * forward


def epoch_macs(config: Config, images: int, num_classes: int = 4, size: int | None = None) -> int:
    """The training cost of one epoch of `images` images at `size` px (default: the input size) under
    `config`, in multiply-adds."""
    size = size or config.input_size
    return PASSES * images * forward_macs(config.model, size, config.model_options(), num_classes)


def training_cost(epochs: list[dict], eval_macs: int | None = None) -> dict[str, float] | None:
    """A run's cost from its metrics.jsonl lines: multiply-adds of training, relative to REFERENCE's,
    wall minutes and img/s of the day; None where an epoch was logged without its multiply-adds
    (a run from before they were counted)."""
    if not epochs or any("train_macs" not in e for e in epochs):
        return None
    macs = sum(e["train_macs"] for e in epochs)
    seconds = sum(e["seconds"] for e in epochs)
    images = sum(e["images_per_s"] * e["seconds"] for e in epochs)
    cost = {"multiply_adds": macs, "relative": macs / reference_macs(), "minutes": seconds / 60}
    cost["images_per_s"] = images / max(seconds, 1e-9)
    if eval_macs is not None:
        cost["eval_multiply_adds_per_image"] = eval_macs
    return cost


def planned_cost(config: Config, images_per_epoch: int = EPOCH_IMAGES) -> float:
    """The training cost that `config` plans, relative to REFERENCE's: every epoch at its size
    (Config.epoch_size) over `images_per_epoch` images (by default the full dataset's, scaled by
    train_fraction). Known before a run, and equal to a finished run's where it saw those images."""
    images = round(images_per_epoch * config.train_fraction)
    sizes = [config.epoch_size(epoch) for epoch in range(1, config.epochs + 1)]
    return sum(epoch_macs(config, images, size=size) for size in sizes) / reference_macs()


def relative_cost(cost: dict[str, float]) -> float:
    """The share of REFERENCE's cost in a training_cost record, also of one written before the unit
    was named (it called the share "main_job": the same recipe)."""
    return cost["relative"] if "relative" in cost else cost["main_job"]
