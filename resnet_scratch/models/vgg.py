"""VGG16, configuration D of Simonyan & Zisserman, "Very Deep Convolutional Networks" (ICLR 2015).

Layer names follow the paper and its Caffe release: conv1_1 ... conv5_3, pool1 ... pool5, fc6 ... fc8.
"""

from collections import OrderedDict

import torch
from torch import Tensor, nn

from .common import ModelInfo, check_input, record_stages

# Table 1 of the paper, column D: output channels of each 3x3 conv, one list per block; every
# block ends in a 2x2 max pool with stride 2.
VGG_CFGS: dict[str, list[list[int]]] = {
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
}

# Five unpadded 2x2 max pools: a 31 px input reaches 0 px at pool5.
MIN_SIZE = 32


def conv_block(index: int, in_channels: int, widths: list[int], batch_norm: bool) -> nn.Sequential:
    """Block `index` (1-based): 3x3 convs with ReLU (and BN if asked), then a 2x2 max pool."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for j, width in enumerate(widths, start=1):
        layers[f"conv{index}_{j}"] = nn.Conv2d(in_channels, width, 3, padding=1)
        if batch_norm:
            layers[f"bn{index}_{j}"] = nn.BatchNorm2d(width)
        layers[f"relu{index}_{j}"] = nn.ReLU(inplace=True)
        in_channels = width
    layers[f"pool{index}"] = nn.MaxPool2d(2, stride=2)
    return nn.Sequential(layers)


class VGG(nn.Module):
    """Stacks of 3x3 convolutions separated by max pooling, then three fully connected layers."""

    def __init__(
        self,
        cfg: list[list[int]],
        num_classes: int = 1000,
        *,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if len(cfg) != 5:  # forward names five blocks, as every configuration of the paper has
            raise ValueError(f"a VGG configuration has 5 blocks, got {len(cfg)}")
        in_channels = 3
        for i, widths in enumerate(cfg, start=1):
            self.add_module(f"block{i}", conv_block(i, in_channels, widths, batch_norm))
            in_channels = widths[-1]
        self.num_blocks = len(cfg)
        # The paper evaluates densely on larger images; adaptive pooling to the 7x7 that fc6 was
        # trained on lets any input of at least MIN_SIZE through (torchvision does the same).
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(in_channels * 7 * 7, 4096),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(4096, num_classes),
            )
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper initialised D from a trained shallower net; like torchvision we use He init
        # for the convolutions and N(0, 0.01) for the fully connected layers instead.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, N x num_classes."""
        check_input(x, channels=3, min_size=MIN_SIZE, model="VGG16")
        x = self.block1(x)  # N x 64 x H/2 x W/2
        x = self.block2(x)  # N x 128 x H/4 x W/4
        x = self.block3(x)  # N x 256 x H/8 x W/8
        x = self.block4(x)  # N x 512 x H/16 x W/16
        x = self.block5(x)  # N x 512 x H/32 x W/32
        x = self.avgpool(x)  # N x 512 x 7 x 7
        x = torch.flatten(x, 1)  # N x 25088
        x = self.classifier(x)  # N x num_classes
        return x

    def forward_stages(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """The output of every block, the pooling and the classifier, in order."""
        return record_stages(self, x, [f"block{i}" for i in range(1, self.num_blocks + 1)] + ["avgpool", "classifier"])


def vgg16(num_classes: int = 1000, *, dropout: float = 0.5, batch_norm: bool = False) -> VGG:
    """VGG16 (configuration D: 13 conv + 3 fc), optionally with batch norm after every conv."""
    return VGG(VGG_CFGS["D"], num_classes, dropout=dropout, batch_norm=batch_norm)


def vgg16_bn(num_classes: int = 1000, *, dropout: float = 0.5) -> VGG:
    """VGG16 with batch norm after every conv (not in the paper; torchvision's vgg16_bn)."""
    return vgg16(num_classes, dropout=dropout, batch_norm=True)


INFO: dict[str, ModelInfo] = {
    "vgg16": ModelInfo(
        vgg16, input_size=224, min_size=MIN_SIZE, heads=("classifier.fc8",), torchvision_file="vgg16-397923af.pth"
    ),
    "vgg16_bn": ModelInfo(
        vgg16_bn, input_size=224, min_size=MIN_SIZE, heads=("classifier.fc8",), torchvision_file="vgg16_bn-6c64b313.pth"
    ),
}
