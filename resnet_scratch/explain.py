"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The class score's gradient with respect to a stage's feature maps, averaged over space, weighs each
map; the ReLU of the weighted sum, upsampled to the input, is the heatmap. The default stage is the
last one of each family: conv5_x (ResNet), block5 (VGG16), Mixed_7c (InceptionV3).
"""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .models import VGG, InceptionV3, ResNet


def last_stage(model: nn.Module) -> nn.Module:
    """The default Grad-CAM layer of each family."""
    if isinstance(model, ResNet):
        return model.conv5_x
    if isinstance(model, VGG):
        return getattr(model, f"block{model.num_blocks}")
    if isinstance(model, InceptionV3):
        return model.Mixed_7c
    raise ValueError(f"no default Grad-CAM layer for {type(model).__name__}; pass layer=")


def grad_cam(
    model: nn.Module, images: Tensor, target: Tensor | None = None, layer: nn.Module | None = None
) -> tuple[Tensor, Tensor]:
    """(heatmaps N x H x W in [0, 1], logits N x C) for a normalised batch; target defaults to the
    predicted class. The model is run in eval mode; its parameters' gradients are left untouched."""
    layer = layer or last_stage(model)
    was_training = model.training
    model.eval()
    captured: dict[str, Tensor] = {}

    def keep(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        captured["maps"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # so the graph exists even for a frozen model
            logits = model(x)
            chosen = logits.argmax(1) if target is None else target.to(logits.device)
            score = logits.gather(1, chosen[:, None]).sum()
            maps = captured["maps"]
            (grads,) = torch.autograd.grad(score, maps)
    finally:
        handle.remove()
        model.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # N x C x 1 x 1: one weight per feature map
    cam = F.relu((weights * maps).sum(1, keepdim=True)).detach()  # N x 1 x h x w
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp(min=1e-12).view(-1, 1, 1)
    return cam / peak, logits.detach()


def overlay(image: Tensor, heatmap: Tensor, alpha: float = 0.45) -> Tensor:
    """An H x W x 3 float image (0..1) with the heatmap blended in as a jet colour map."""
    import matplotlib

    colours = torch.from_numpy(matplotlib.colormaps["jet"](heatmap.cpu().numpy())[..., :3]).float()
    base = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    base = base.permute(1, 2, 0) if base.shape[0] == 3 else base
    return ((1 - alpha) * base + alpha * colours).clamp(0, 1)


def stage_grad_norms(
    model: nn.Module,
    images: Tensor,
    target: Tensor,
    stages: tuple[str, ...] = ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"),
) -> dict[str, float]:
    """The size of the loss gradient reaching each stage's output, for one batch: the root mean square
    of dLoss/dx over the output's elements (so stages of different sizes compare), stage by stage.

    The quantity of the ResNet papers' gradient argument: how much of the loss's gradient flows back
    to a stage's activations. The paper (Section 4.1) argues that with BatchNorm a plain deep
    network's gradients do not vanish; this measures that per stage, with and without shortcuts.
    BatchNorm runs in training mode, as in the first step of training (so this batch also moves the
    running statistics); the parameters' .grad fields are left empty.
    """
    outputs: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            output.retain_grad()
            outputs[name] = output

        return hook

    was_training = model.training
    model.train()
    handles = [getattr(model, name).register_forward_hook(keep(name)) for name in stages]
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # a graph even for a frozen model
            output = model(x)
            logits = output if isinstance(output, Tensor) else output.logits  # InceptionOutputs
            F.cross_entropy(logits, target).backward()
        return {name: float(outputs[name].grad.square().mean().sqrt()) for name in stages}
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def layer_responses(model: ResNet, images: Tensor) -> list[float]:
    """The ResNet paper's Figure 7 measure, layer by layer from the input: the standard deviation of
    each 3x3 layer's response, its output after BatchNorm and before the ReLU or the addition
    (Section 4.2). In a residual block the last such response is the branch F(x) itself, so small
    values mean the blocks stay close to the identity. Eval mode; the model's mode is kept."""
    layers = [
        bn
        for stage in ("conv2_x", "conv3_x", "conv4_x", "conv5_x")
        for block in getattr(model, stage)
        for conv, bn in zip(
            (block.conv1, block.conv2, getattr(block, "conv3", None)),
            (block.bn1, block.bn2, getattr(block, "bn3", None)),
        )
        if conv is not None and conv.kernel_size == (3, 3)
    ]
    responses: list[float] = []
    handles = [
        bn.register_forward_hook(lambda _m, _i, out: responses.append(float(out.float().std()))) for bn in layers
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return responses
