"""resnet_scratch: ResNet, VGG16 and InceptionV3 from torch.nn primitives, for brain MRI slices."""

__version__ = "0.1.0"

from .models import (  # noqa: E402
    MODEL_INFO,
    MODELS,
    inception_v3,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    vgg16,
    vgg16_bn,
)
from .pretrained import build  # noqa: E402

__all__ = [
    "MODELS",
    "MODEL_INFO",
    "build",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "vgg16",
    "vgg16_bn",
    "inception_v3",
]
