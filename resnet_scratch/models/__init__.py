"""The model zoo: a plain dict of builders, and `build` to make one by name."""

import inspect
from collections.abc import Callable

from torch import nn

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


def build(name: str, **options: object) -> nn.Module:
    """Build model `name` from MODELS; `options` are that builder's keyword arguments.

    Unknown names and options raise a ValueError listing what is accepted, instead of a
    TypeError from inside the builder.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    builder = MODELS[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(
            f"{name} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    return builder(**options)


__all__ = [
    "MODELS", "INPUT_SIZES", "build", "PAPER_GMACS", "RESNET_SPECS",
    "BasicBlock", "Bottleneck", "ResNet", "VGG", "VGG_CFGS", "InceptionV3", "InceptionOutputs",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg16_bn", "inception_v3",
]
