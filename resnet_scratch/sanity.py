"""Checks a learner should run on a new network before training it for real (the tutorial runs
them live; tests/test_sanity.py keeps them true).

- The loss at initialisation is about ln(classes): a model that knows nothing spreads its
  probability evenly. Far above means the logits start too large. Far below, at initialisation,
  means a bug (a wrong reduction or targets, weights that are not fresh): an untrained network
  cannot exploit a leaked label, which shows later as validation accuracy that is too good.
- A network overfits one batch, and does not with its inputs zeroed (the input-independent
  baseline: a model that cannot see its input can only learn the label frequencies). A network
  that cannot memorise eight images points to the learning rate's scale, a gradient that does not
  reach the parameters, an optimizer that does not move them, a loss bug, labels that change
  between steps, augmentation or dropout at every step, or too little capacity. The check says
  nothing about whether images and labels are paired correctly: random labels are memorised too.
- With every residual branch silenced (the last BatchNorm's weight and bias zero, so F(x) = 0), a
  block with an identity shortcut passes its input through: relu(0 + x) = x for the non-negative x
  that a ReLU stage hands on.
- The gradient reaching each stage (explain.stage_grad_norms): with BatchNorm neither network's
  gradient vanishes at initialisation; without shortcuts it grows towards the input far more than
  with them (Balduzzi et al. 2017 and Yang et al. 2019 study that growth).
"""

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .models import ResNet


def generated_batch(n: int = 16, size: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    """n images of random pixels (already normalised) and random labels of four classes: the batch the
    tutorial's checks and their tests share."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)


def initial_loss(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """The cross-entropy of a fresh model on a batch, as the first training step sees it (train-mode
    BatchNorm); the model is left as it was."""
    probe = copy.deepcopy(model).train()
    with torch.no_grad():
        output = probe(images)
    logits = output if isinstance(output, Tensor) else output.logits
    return float(F.cross_entropy(logits, labels))


def chance_loss(num_classes: int) -> float:
    """ln(classes): the cross-entropy of a uniform guess."""
    return math.log(num_classes)


def overfit_one_batch(
    model: nn.Module, images: Tensor, labels: Tensor, steps: int = 60, lr: float = 0.01
) -> list[float]:
    """The training loss over `steps` SGD steps on one batch (the model is trained in place)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    losses = []
    for _ in range(steps):
        output = model(images)
        loss = F.cross_entropy(output if isinstance(output, Tensor) else output.logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def last_bn(block: nn.Module) -> nn.BatchNorm2d:
    """The BatchNorm that ends a block's residual branch F."""
    return block.bn3 if hasattr(block, "bn3") else block.bn2


def silence_residual_branches(model: ResNet) -> None:
    """Zero the last BatchNorm's weight and bias in every block, so each residual branch outputs 0."""
    for stage in (model.conv2_x, model.conv3_x, model.conv4_x, model.conv5_x):
        for block in stage:
            nn.init.zeros_(last_bn(block).weight)
            nn.init.zeros_(last_bn(block).bias)


def identity_blocks(model: ResNet) -> list[tuple[str, nn.Module]]:
    """The blocks whose shortcut is the identity (no projection, no zero-padding)."""
    return [
        (f"{name}.{i}", block)
        for name in ("conv2_x", "conv3_x", "conv4_x", "conv5_x")
        for i, block in enumerate(getattr(model, name))
        if block.skip and block.shortcut is None
    ]


def passthrough_error(model: ResNet, images: Tensor) -> float:
    """The largest |output - input| of any identity-shortcut block on one forward pass (eval mode):
    exactly 0 once the branches are silenced, since relu(0 + x) = x for x >= 0."""
    worst = [0.0]

    def record(block: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        worst[0] = max(worst[0], float((output - inputs[0]).abs().max()))

    handles = [block.register_forward_hook(record) for _, block in identity_blocks(model)]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for handle in handles:
            handle.remove()
    return worst[0]
