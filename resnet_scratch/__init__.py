"""resnet_scratch: ResNet, VGG16 and InceptionV3 from torch.nn primitives, for brain MRI slices."""

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
from .predictor import Predictor  # noqa: E402
from .pretrained import build  # noqa: E402
from .version import __version__  # noqa: F401


def list_models() -> list[str]:
    """The names build() takes: resnet18 ... resnet152, vgg16, vgg16_bn, inception_v3."""
    return list(MODELS)


def load_checkpoint(path: str, device: str = "auto", bf16: bool | None = None) -> Predictor:
    """A trained model ready to use: its weights, classes and preprocessing, from a run's checkpoint.

    predictor.model is the network; predictor.classes its class names; predictor.logits(images) scores
    a uint8 N x 3 x H x W batch prepared with predictor.prep.image(). bf16: None autocasts where the
    device supports it.
    """
    return Predictor.load(path, device, bf16=bf16)


__all__ = [
    "MODELS",
    "MODEL_INFO",
    "Predictor",
    "build",
    "list_models",
    "load_checkpoint",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "vgg16",
    "vgg16_bn",
    "inception_v3",
]
