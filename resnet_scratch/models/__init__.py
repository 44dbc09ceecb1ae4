"""The model zoo: a plain dict of builders, and `build` to make one by name."""

import inspect
from collections.abc import Callable
from pathlib import Path

from torch import nn

from .pretrained import freeze_backbone, read_weights, transplant
from .inception import InceptionOutputs, InceptionV3, inception_v3
from .resnet import PAPER_GMACS, RESNET_SPECS, BasicBlock, Bottleneck, ResNet
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from .vgg import VGG, VGG_CFGS, vgg16, vgg16_bn

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "inception_v3": inception_v3,
}

# The resolution each family was designed and pretrained at.
INPUT_SIZES: dict[str, int] = {name: 224 for name in MODELS} | {"inception_v3": 299}


def build(
    name: str,
    *,
    weights: str | Path | None = None,
    freeze: str | None = None,
    **options: object,
) -> nn.Module:
    """Build model `name` from MODELS; `options` are that builder's keyword arguments.

    weights: None (random init), "imagenet" (torchvision's ImageNet file, found or downloaded by
    weights_convert.find_imagenet_file), or a path to a torchvision .pth or our .safetensors. The
    backbone is loaded; the head keeps its fresh initialisation when num_classes differs from the
    file's. freeze: None (train everything) or "backbone" (only the head trains; frozen BatchNorm
    layers stay in eval mode). Unknown names and options raise a ValueError listing what is accepted.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    builder = MODELS[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(
            f"{name} does not take option(s) {', '.join(unknown)}; it takes: "
            f"{', '.join(accepted + ['weights', 'freeze'])}"
        )
    if freeze not in (None, "backbone"):
        raise ValueError(f'freeze must be None or "backbone", got {freeze!r}')
    if freeze == "backbone" and weights is None:
        raise ValueError('freeze="backbone" needs pretrained weights: a random backbone cannot be frozen usefully')
    if weights is None:
        return builder(**options)

    from weights_convert import HEADS

    state, metadata = read_weights(name, weights)
    if name == "inception_v3" and "transform_input" not in options:
        options["transform_input"] = metadata.get("transform_input", "false") == "true"
    model = builder(**options)
    transplant(model, state, HEADS[name])
    if freeze == "backbone":
        freeze_backbone(model, HEADS[name])
    return model


__all__ = [
    "MODELS", "INPUT_SIZES", "build", "PAPER_GMACS", "RESNET_SPECS",
    "BasicBlock", "Bottleneck", "ResNet", "VGG", "VGG_CFGS", "InceptionV3", "InceptionOutputs",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg16_bn", "inception_v3",
]
