"""What the three families share: the record of facts kept next to each model, input checks, and
the opt-in recording of stage outputs."""

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

# The ImageNet statistics torchvision's weights were trained with: (x / 255 - mean) / std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """One architecture's facts, kept next to its code (timm keeps one such record per model).

    builder: makes the model (num_classes and the family's options as keywords).
    input_size: the resolution it was designed and pretrained at.
    min_size: the smallest height/width its strided layers can reduce, in eval mode.
    heads: prefixes of the classifier's parameters, replaced when fine-tuning on new classes.
    torchvision_file: torchvision's ImageNet file (IMAGENET1K_V1); the hex is its SHA-256's start.
    mean, std: the normalisation those weights expect.
    paper_rows: the paper's layer table at input_size, row -> (C, H, W) of its output.
    paper_gmacs: the paper's multiply-adds in units of 10^9 (ResNet's Table 1 "FLOPs" row, v1).
    """

    builder: Callable[..., nn.Module]
    input_size: int
    min_size: int
    heads: tuple[str, ...]
    torchvision_file: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    paper_rows: dict[str, tuple[int, int, int]] | None = None
    paper_gmacs: float | None = None


def check_input(x: Tensor, *, channels: int, min_size: int, model: str) -> None:
    """Raise a ValueError naming what `model` expects, before a shape error deep inside can.

    `min_size` is the smallest height/width the network's strided layers can reduce without
    running out of pixels; it is a property of the architecture, stated in its ModelInfo.
    """
    if x.dim() != 4:
        raise ValueError(
            f"{model} expects a batch shaped N x {channels} x H x W, got a {x.dim()}-d tensor of shape {tuple(x.shape)}"
        )
    _, c, h, w = x.shape
    if c != channels:
        raise ValueError(
            f"{model} expects {channels} input channels (N x {channels} x H x W), got {c} "
            f"in shape {tuple(x.shape)}; grey images must be repeated to 3 channels first"
        )
    if h < min_size or w < min_size:
        raise ValueError(f"{model} needs inputs of at least {min_size}x{min_size} pixels, got {h}x{w}")


def record_stages(model: nn.Module, x: Tensor, stages: Sequence[str]) -> "OrderedDict[str, Tensor]":
    """Run model(x) and return the output of each named top-level child, in execution order.

    Forward hooks, so `forward` stays a straight line that keeps no intermediate alive; only a
    caller who asks for the stages (layer tables, tests, teaching) holds them all.
    """
    outputs: OrderedDict[str, Tensor] = OrderedDict()

    def keep(name: str) -> Callable[[nn.Module, object, Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            outputs[name] = output

        return hook

    handles = [getattr(model, name).register_forward_hook(keep(name)) for name in stages]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs
