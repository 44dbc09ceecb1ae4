"""The recipe levers of the time-to-accuracy study: flip test-time augmentation, progressive resizing
and an exponential moving average of the weights."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet_scratch.checkpoint import checkpoint_metadata, save_model
from resnet_scratch.config import Config, ConfigError, load_config
from resnet_scratch.cost import forward_macs
from resnet_scratch.models import build
from resnet_scratch.predictor import Predictor, Preprocess, logits_of
from resnet_scratch.train import fit

from conftest import make_folder


class LeftRight(nn.Module):
    """Logits that tell the left half of an image from the right: a mirror image changes them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        left, right = x[..., :half].mean((1, 2, 3)), x[..., half:].mean((1, 2, 3))
        return torch.stack([left, right, left - right, right * 2], 1)


def test_flip_tta_averages_the_logits_of_an_image_and_its_mirror() -> None:
    images = torch.randint(0, 256, (5, 3, 37, 37), dtype=torch.uint8)
    plain = Preprocess(32, (0.5,) * 3, (0.2,) * 3)
    tta = Preprocess(32, (0.5,) * 3, (0.2,) * 3, tta_flip=True)
    rows = torch.arange(5)
    x = plain.batch(images, rows)
    model = LeftRight()
    expected = (model(x) + model(x.flip(-1))) / 2
    assert torch.allclose(logits_of(model, images, rows, tta), expected, atol=1e-5)
    assert not torch.allclose(logits_of(model, images, rows, plain), expected, atol=1e-3)


def test_a_checkpoint_records_flip_tta(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    meta = checkpoint_metadata("resnet18", list("abcd"), 32, {}, (0.5,) * 3, (0.2,) * 3, tta_flip=True)
    save_model(path, build("resnet18", num_classes=4), meta)
    assert Predictor.load(path, device="cpu").prep.tta_flip
    old = checkpoint_metadata("resnet18", list("abcd"), 32, {}, (0.5,) * 3, (0.2,) * 3)
    del old["tta_flip"]  # a checkpoint from before the setting
    save_model(path, build("resnet18", num_classes=4), old)
    assert not Predictor.load(path, device="cpu").prep.tta_flip


def test_evaluate_can_add_flip_tta_to_a_checkpoint_trained_without_it(tmp_path: Path) -> None:
    """--tta-flip true scores a plain checkpoint as if it recorded tta_flip; auto keeps the record."""
    from resnet_scratch.__main__ import main

    folder = make_folder(tmp_path / "data", {"set": {"glioma": 3, "notumor": 3}}, size=(70, 52)) / "set"
    torch.manual_seed(0)
    model = build("resnet18", num_classes=4).eval()
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    for name, flip in (("plain", False), ("flip", True)):
        meta = checkpoint_metadata("resnet18", classes, 32, {}, (0.2,) * 3, (0.3,) * 3, tta_flip=flip)
        save_model(tmp_path / f"{name}.safetensors", model, meta)

    def probabilities(name: str, flag: str) -> list[str]:
        out = tmp_path / f"{name}-{flag}"
        args = ["--checkpoint", str(tmp_path / f"{name}.safetensors"), "--data", str(folder), "--out", str(out)]
        assert main(["evaluate", *args, "--device", "cpu", "--bf16", "false", "--tta-flip", flag]) == 0
        assert json.loads((out / "metrics.json").read_text())["tta_flip"] == {"true": True, "false": False}.get(
            flag, name == "flip"
        )
        return (out / "predictions.csv").read_text().splitlines()

    flipped = probabilities("plain", "true")
    assert flipped == probabilities("flip", "auto") != probabilities("plain", "auto")
    assert probabilities("flip", "false") == probabilities("plain", "auto")
    assert "mirror image (flip TTA)" in (tmp_path / "plain-true" / "report.md").read_text()


def test_the_crop_settings_reach_the_training_crops(monkeypatch) -> None:
    import resnet_scratch.train as train

    seen = {}
    monkeypatch.setattr(train, "train_transform", lambda *args, **kwargs: seen.update(kwargs))
    config = Config(crop_scale_min=0.79, crop_scale_max=0.79, crop_ratio_max=1.0)
    train.training_transform(config, torch.device("cpu"), (0.5,) * 3, (0.2,) * 3)(None, None, None)
    assert seen["scale"] == (0.79, 0.79) and seen["ratio"] == (1.0, 1.0)
    train.training_transform(Config(), torch.device("cpu"), (0.5,) * 3, (0.2,) * 3)(None, None, None)
    assert seen["scale"] == (0.08, 1.0) and seen["ratio"] == pytest.approx((3 / 4, 4 / 3))  # torchvision's
    with pytest.raises(ConfigError, match="crop_scale_min = 0.9: larger than crop_scale_max 0.5"):
        Config(crop_scale_min=0.9, crop_scale_max=0.5)


def test_progressive_resizing_grows_in_16_px_steps_to_full_size() -> None:
    config = Config(image_size=160, min_image_size=96, epochs=16, resize_until=0.75)
    sizes = [config.epoch_size(e) for e in range(1, 17)]
    assert sizes[0] == 96 and sizes[11:] == [160] * 5  # full size from epoch 12 (0.75 of 16) on
    assert sizes == sorted(sizes) and all(s % 16 == 0 for s in sizes)
    assert [Config(image_size=128).epoch_size(e) for e in (1, 25)] == [128, 128]  # off by default


def test_progressive_resizing_refuses_a_start_above_the_input_size() -> None:
    with pytest.raises(ConfigError, match="min_image_size = 160: larger than the input size 128"):
        Config(image_size=128, min_image_size=160)


def test_a_progressive_run_trains_and_counts_each_epochs_size(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"Training": {c: 12 for c in "abcd"}, "Testing": {c: 2 for c in "abcd"}})
    flags = {"data": str(data), "runs_dir": str(tmp_path / "runs"), "name": "p", "image_size": 64}
    flags |= {"min_image_size": 32, "epochs": 3, "resize_until": 1.0, "batch_size": 8, "external": "none"}
    run = fit(load_config(None, flags))
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["image_size"] for e in epochs] == [32, 48, 64]
    seen = [round(e["images_per_s"] * e["seconds"]) for e in epochs]
    assert [e["train_macs"] for e in epochs] == [
        3 * n * forward_macs("resnet18", s) for n, s in zip(seen, (32, 48, 64))
    ]


def test_the_weight_average_follows_the_weights_by_its_decay() -> None:
    from resnet_scratch.train import WeightAverage

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.75)
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(4.0)
        model[1].num_batches_tracked.fill_(7)
    average.update(model)
    assert torch.allclose(average.model[0].weight, before + 0.25 * 4.0)  # a quarter of the way
    assert average.model[1].num_batches_tracked.item() == 7  # counters are copied, not averaged
    assert not average.model[0].weight.requires_grad and not average.model.training


def test_a_run_with_a_weight_average_chooses_and_saves_it(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"Training": {c: 12 for c in "abcd"}, "Testing": {c: 2 for c in "abcd"}})
    flags = {"data": str(data), "runs_dir": str(tmp_path / "runs"), "name": "e", "image_size": 32}
    flags |= {"ema": 0.9, "epochs": 2, "batch_size": 8, "external": "none"}
    run = fit(load_config(None, flags))
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"val_accuracy", "val_accuracy_raw"} <= set(e) for e in epochs)
    assert (run / "ema.safetensors").is_file() and (run / "last.safetensors").is_file()
    from resnet_scratch.checkpoint import load_model_file

    ema, _ = load_model_file(run / "ema.safetensors")
    last, _ = load_model_file(run / "last.safetensors")
    assert not torch.equal(ema["fc.weight"], last["fc.weight"])  # the average is not the last weights
