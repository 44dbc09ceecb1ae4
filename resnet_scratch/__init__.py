"""resnet_scratch: ResNet, VGG16 and InceptionV3 from torch.nn primitives, for brain MRI slices."""

from .models import (
    INPUT_SIZES,
    MODELS,
    build,
    inception_v3,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    vgg16,
    vgg16_bn,
)

__version__ = "0.1.0"

__all__ = [
    "MODELS", "INPUT_SIZES", "build",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg16_bn", "inception_v3",
]
