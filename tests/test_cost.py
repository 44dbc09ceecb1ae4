"""The training cost in multiply-adds: counted from the package's own counter, relative to the 128 px recipe's."""

import pytest
import torch

from resnet_scratch.config import Config, read_toml, recipe_path
from resnet_scratch.cost import (
    EPOCH_IMAGES,
    PASSES,
    REFERENCE,
    epoch_macs,
    forward_macs,
    reference_macs,
    relative_cost,
    training_cost,
)
from resnet_scratch.models import build
from resnet_scratch.summary import count_macs


def test_forward_macs_is_the_summarys_count() -> None:
    with torch.device("meta"):
        model = build("resnet18", num_classes=4)
    assert forward_macs("resnet18", 128) == count_macs(model.eval(), 128)[0]
    assert 0.55e9 < forward_macs("resnet18", 128) < 0.65e9  # ResNet-18's 1.8 G at 224 px, times (128/224)^2


def test_the_unit_of_cost_is_the_reference_recipes_epochs_of_images_at_its_size() -> None:
    recipe = read_toml(recipe_path(REFERENCE))
    assert (recipe["image_size"], recipe["epochs"]) == (128, 22)
    forward = forward_macs(recipe["model"], recipe["image_size"])
    assert reference_macs() == recipe["epochs"] * EPOCH_IMAGES * PASSES * forward


def test_the_reference_recipes_own_epochs_cost_one() -> None:
    recipe = read_toml(recipe_path(REFERENCE))
    config = Config(model=recipe["model"], image_size=recipe["image_size"])
    lines = [{"train_macs": epoch_macs(config, EPOCH_IMAGES), "seconds": 40.0, "images_per_s": 128.35}]
    cost = training_cost(lines * recipe["epochs"])
    assert cost["relative"] == pytest.approx(1.0) and relative_cost(cost) == cost["relative"]
    assert relative_cost({"main_job": 0.25}) == 0.25  # a record written before the unit was named
    assert cost["minutes"] == pytest.approx(recipe["epochs"] * 40 / 60)


def test_the_cost_grows_with_the_pixels() -> None:
    """Sizes that every stride divides (32 px steps): the convolutions' cost is in proportion to the pixels."""
    small, large = forward_macs("resnet18", 96), forward_macs("resnet18", 128)
    assert small / large == pytest.approx((96 / 128) ** 2, rel=0.001)


def test_runs_logged_before_the_count_have_no_cost() -> None:
    assert training_cost([{"seconds": 1.0, "images_per_s": 1.0}]) is None
    assert training_cost([]) is None
