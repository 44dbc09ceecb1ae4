"""The model zoo: one record of facts per architecture (MODEL_INFO), the builders, and `build`."""

import inspect
from collections.abc import Callable

from torch import nn

from . import inception, resnet, vgg
from .common import IMAGENET_MEAN, IMAGENET_STD, ModelInfo
from .inception import InceptionOutputs, InceptionV3, inception_v3
from .resnet import (
    RESNET_SPECS,
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from .vgg import VGG, VGG_CFGS, vgg16, vgg16_bn

MODEL_INFO: dict[str, ModelInfo] = resnet.INFO | vgg.INFO | inception.INFO

MODELS: dict[str, Callable[..., nn.Module]] = {name: info.builder for name, info in MODEL_INFO.items()}


def build(name: str, **options: object) -> nn.Module:
    """A freshly initialised model `name`; `options` are its builder's keyword arguments.

    Unknown names and options raise a ValueError listing what is accepted. Starting from
    pretrained weights is resnet_scratch.build's (resnet_scratch/pretrained.py).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    builder = MODELS[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(f"{name} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted)}")
    return builder(**options)


__all__ = [
    "MODELS",
    "MODEL_INFO",
    "ModelInfo",
    "build",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET_SPECS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "VGG",
    "VGG_CFGS",
    "InceptionV3",
    "InceptionOutputs",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "vgg16",
    "vgg16_bn",
    "inception_v3",
]
