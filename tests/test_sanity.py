"""The sanity checks of the tutorial (resnet_scratch/sanity.py), each kept true by a test on the same
batch and settings the tutorial prints."""

import math

import pytest
import torch

from resnet_scratch.explain import stage_grad_norms
from resnet_scratch.models import build
from resnet_scratch.sanity import (
    chance_loss,
    generated_batch,
    identity_blocks,
    initial_loss,
    overfit_one_batch,
    passthrough_error,
    silence_residual_branches,
)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_loss_at_initialisation_is_about_ln_4(name: str) -> None:
    x, y = generated_batch()
    torch.manual_seed(0)
    plain = build(name, num_classes=4, skip=False)
    residual = build(name, num_classes=4)
    assert chance_loss(4) == pytest.approx(1.386, abs=1e-3)
    assert initial_loss(plain, x, y) == pytest.approx(math.log(4), abs=0.05)
    # With shortcuts each block adds its branch to the stream, so the logits start larger and the
    # loss strays further from ln 4 (either way, with random labels).
    assert abs(initial_loss(residual, x, y) - math.log(4)) < 0.7
    silence_residual_branches(residual)
    assert initial_loss(residual, x, y) == pytest.approx(math.log(4), abs=0.1)


def test_initial_loss_leaves_the_model_untouched() -> None:
    x, y = generated_batch()
    model = build("resnet18", num_classes=4).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    initial_loss(model, x, y)
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_a_network_overfits_one_batch() -> None:
    """The tutorial's run: ResNet-18, 8 generated images at 32 px, 60 steps at the default lr."""
    x, y = generated_batch()
    torch.manual_seed(0)
    losses = overfit_one_batch(build("resnet18", num_classes=4), x[:8, :, :32, :32], y[:8], steps=60)
    assert losses[0] > 1.0 and losses[-1] < 0.05
    torch.manual_seed(0)  # the input-independent baseline: with nothing to read, only label frequencies
    blind = overfit_one_batch(build("resnet18", num_classes=4), torch.zeros(8, 3, 32, 32), y[:8], steps=60)
    frequencies = torch.bincount(y[:8], minlength=4).float() / 8
    entropy = float(-(frequencies[frequencies > 0] * frequencies[frequencies > 0].log()).sum())
    assert blind[-1] > entropy - 0.05  # no better than knowing how often each label occurs


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_silenced_branches_let_identity_blocks_pass_their_input_through(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes=4).eval()
    silence_residual_branches(model)
    blocks = identity_blocks(model)
    # ResNet-18: conv2_x's first block too (64 -> 64 channels, stride 1); ResNet-50: not (64 -> 256).
    first = ["conv2_x.0", "conv2_x.1"] if name == "resnet18" else ["conv2_x.1", "conv2_x.2"]
    assert [n for n, _ in blocks][:2] == first
    assert len(blocks) == (5 if name == "resnet18" else 12)
    x = torch.relu(torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        h = model.maxpool(model.conv1(x))
        for stage in (model.conv2_x, model.conv3_x, model.conv4_x, model.conv5_x):
            for block in stage:
                out = block(h)
                if block.shortcut is None:
                    assert torch.equal(out, h)  # relu(0 + h) = h, since h >= 0
                h = out
    assert passthrough_error(model, x) == 0.0  # the tutorial's measurement of the same thing
    fresh = build(name, num_classes=4)
    assert passthrough_error(fresh, x) > 0.0  # and it can fail: live branches change their input


def test_the_gradient_reaching_each_stage_plain_against_residual() -> None:
    """The tutorial's check 4: neither network's gradient vanishes at initialisation; the plain
    network's grows towards the input far more than the residual one's."""
    x, y = generated_batch()
    ratio = {}
    for skip in (True, False):
        torch.manual_seed(0)
        norms = stage_grad_norms(build("resnet34", num_classes=4, skip=skip), x, y)
        assert list(norms) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
        assert all(math.isfinite(v) and v > 0 for v in norms.values())
        ratio[skip] = norms["conv1"] / norms["conv5_x"]
    assert ratio[False] > 3 * ratio[True] and ratio[True] > 1
