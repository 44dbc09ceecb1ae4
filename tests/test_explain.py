"""Grad-CAM: it must point at the region a model's answer depends on, for every family."""

import pytest
import torch
from torch.nn import functional as F

from resnet_scratch.explain import grad_cam, last_stage
from resnet_scratch.models import build


def patch_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """64 x 64 noise; the class is the sign of a 16 x 16 patch in the top-left corner."""
    x = torch.randn(n, 3, 64, 64, generator=generator) * 0.5
    y = torch.randint(0, 2, (n,), generator=generator)
    x[:, :, 4:20, 4:20] += (y.float() * 2 - 1).view(-1, 1, 1, 1) * 2.0
    return x, y


@pytest.mark.slow
def test_heatmap_peaks_where_the_answer_comes_from() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = build("resnet18", num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(60):
        x, y = patch_task(32, generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    x, y = patch_task(64, generator)
    heatmaps, logits = grad_cam(model, x)
    assert (logits.argmax(1) == y).float().mean() > 0.95  # it did learn the task
    peaks = heatmaps.flatten(1).argmax(1)
    rows, cols = peaks // 64, peaks % 64
    in_corner = ((rows < 32) & (cols < 32)).float().mean()
    assert in_corner > 0.9, f"only {in_corner:.2f} of the heatmaps peak in the patch's quadrant"


@pytest.mark.parametrize("name, size", [("resnet50", 64), ("vgg16", 64), ("inception_v3", 75)])
def test_every_family_has_a_default_layer(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes=3)
    heatmaps, logits = grad_cam(model, torch.randn(2, 3, size, size))
    assert heatmaps.shape == (2, size, size) and logits.shape == (2, 3)
    assert torch.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1
    expected = {"resnet50": "conv5_x", "vgg16": "block5", "inception_v3": "Mixed_7c"}[name]
    assert last_stage(model) is getattr(model, expected)
    assert all(p.grad is None for p in model.parameters())  # gradients of the weights untouched


def test_explicit_target_and_layer() -> None:
    torch.manual_seed(0)
    model = build("resnet18", num_classes=3).train()
    x = torch.randn(2, 3, 64, 64)
    by_class = [grad_cam(model, x, torch.tensor([c, c]), layer=model.conv4_x)[0] for c in range(3)]
    assert by_class[0].shape == (2, 64, 64) and not torch.equal(by_class[0], by_class[1])
    assert model.training  # the mode is restored
