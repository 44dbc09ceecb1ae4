"""torch.hub entry points: torch.hub.load("path/to/resnet_scratch", "resnet50", source="local", num_classes=4).

Each is resnet_scratch.build for one model: num_classes, weights (None for random, "imagenet" for
torchvision's file converted, or a path to a .pth or a run's .safetensors), and the model's options.
"""

from functools import partial as _partial

from resnet_scratch import build as _build

dependencies = ["torch", "numpy", "safetensors"]

resnet18 = _partial(_build, "resnet18")
resnet34 = _partial(_build, "resnet34")
resnet50 = _partial(_build, "resnet50")
resnet101 = _partial(_build, "resnet101")
resnet152 = _partial(_build, "resnet152")
vgg16 = _partial(_build, "vgg16")
vgg16_bn = _partial(_build, "vgg16_bn")
inception_v3 = _partial(_build, "inception_v3")
