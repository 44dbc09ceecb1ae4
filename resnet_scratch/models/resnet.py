"""ResNet, after He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).

Attribute names follow the rows of the paper's Table 1 (conv1, conv2_x ... conv5_x, fc), so the
code, the table and `forward_stages` all speak the same language. Conversion to and from
torchvision's names (layer1 ... layer4, downsample) lives in weights_convert/.
"""

from collections import OrderedDict
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .common import ModelInfo, check_input, record_stages

StrideOn = Literal["3x3", "1x1"]
Shortcut = Literal["A", "B", "C"]

# Five stride-2 steps (conv1, max pool, conv3_x, conv4_x, conv5_x): below 32 px they run out of
# pixels and the later stages only see padding.
MIN_SIZE = 32


class ZeroPadShortcut(nn.Module):
    """The paper's option A where the shape changes: keep every stride-th pixel, as a strided 1x1
    convolution would sample them, and fill the new channels with zeros. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        """N x C x H x W -> N x C' x H/stride x W/stride, the C' - C new channels all zero."""
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def make_shortcut(in_channels: int, out_channels: int, stride: int, option: Shortcut) -> nn.Module | None:
    """The shortcut of one block, by the paper's options (A and B: Section 3.3; C and Table 3: Section 4.1);
    None is the identity.

    A: identity, and zero-padding where the shape changes (no parameters at all).
    B: identity, and a 1x1 conv + BN projection where the shape changes (torchvision's layout).
    C: a projection on every shortcut.
    """
    same_shape = stride == 1 and in_channels == out_channels
    if option == "A":
        return None if same_shape else ZeroPadShortcut(in_channels, out_channels, stride)
    if option == "B" and same_shape:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (Figure 5, left), used by ResNet-18 and -34."""

    expansion = 1

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, *, skip: bool = True, shortcut: Shortcut = "B"
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.skip = skip
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut) if skip else None

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x) + shortcut(x)); without skip, relu(F(x))."""
        identity = x
        out = self.conv1(x)  # N x width x H/stride x W/stride
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.skip:
            if self.shortcut is not None:
                identity = self.shortcut(x)
            out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (Figure 5, right), used by ResNet-50/101/152."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        *,
        skip: bool = True,
        shortcut: Shortcut = "B",
        stride_on: StrideOn = "3x3",
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        # v1 (the released Caffe models; the paper does not say which layer strides) strides the
        # first 1x1, which throws away 3/4 of the activations before any 3x3 sees them.
        # v1.5 (torchvision, and its weights) moves the stride to the 3x3:
        # about +0.5% top-1 on ImageNet for 4.1 instead of 3.9 GMACs.
        stride_1x1, stride_3x3 = (1, stride) if stride_on == "3x3" else (stride, 1)
        self.skip = skip
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride_3x3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut) if skip else None

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x) + shortcut(x)), where F squeezes to `width` channels, convolves, expands back."""
        identity = x
        out = self.conv1(x)  # N x width x H x W (v1: H/stride)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)  # N x width x H/stride x W/stride
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)  # N x 4*width x H/stride x W/stride
        out = self.bn3(out)
        if self.skip:
            if self.shortcut is not None:
                identity = self.shortcut(x)
            out += identity
        out = self.relu(out)
        return out


Block = type[BasicBlock] | type[Bottleneck]

# The paper's Table 1: depth -> (block, number of blocks in conv2_x, conv3_x, conv4_x, conv5_x).
RESNET_SPECS: dict[int, tuple[Block, list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}

# The paper's "FLOPs" row of Table 1 (multiply-adds, v1 layout), in units of 10^9.
PAPER_GMACS: dict[int, float] = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}

# The rows whose outputs forward_stages returns, in order.
STAGES = ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "avgpool", "fc")


class ResNet(nn.Module):
    """A residual network (or, with skip=False, the paper's plain network of the same depth)."""

    def __init__(
        self,
        block: Block,
        blocks_per_stage: list[int],
        num_classes: int = 1000,
        *,
        skip: bool = True,
        shortcut: Shortcut = "B",
        dropout: float = 0.0,
        stride_on: StrideOn = "3x3",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if stride_on not in ("3x3", "1x1"):
            raise ValueError(f'stride_on must be "3x3" (v1.5) or "1x1" (v1), got {stride_on!r}')
        if shortcut not in ("A", "B", "C"):
            raise ValueError(f'shortcut must be "A", "B" or "C" (the paper\'s Table 3), got {shortcut!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if zero_init_residual and not skip:
            raise ValueError("zero_init_residual needs skip=True: a plain block that starts at zero passes nothing on")
        self.block = block
        self.depth = 2 + (2 if block is BasicBlock else 3) * sum(blocks_per_stage)  # the paper's count
        self.skip = skip
        self.shortcut = shortcut
        self.stride_on = stride_on
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                bn=nn.BatchNorm2d(64),
                relu=nn.ReLU(inplace=True),
            )
        )
        # Table 1 lists the max pool at the top of the conv2_x row.
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.in_channels = 64
        self.conv2_x = self._stage(64, blocks_per_stage[0], stride=1)
        self.conv3_x = self._stage(128, blocks_per_stage[1], stride=2)
        self.conv4_x = self._stage(256, blocks_per_stage[2], stride=2)
        self.conv5_x = self._stage(512, blocks_per_stage[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _stage(self, width: int, count: int, stride: int) -> nn.Sequential:
        """`count` blocks; the first one changes the resolution (stride) and channel count."""
        layers = []
        for i in range(count):
            s = stride if i == 0 else 1
            if self.block is Bottleneck:
                layers.append(
                    Bottleneck(
                        self.in_channels, width, s, skip=self.skip, shortcut=self.shortcut, stride_on=self.stride_on
                    )
                )
            else:  # v1 and v1.5 differ only in the bottleneck: a basic block has no 1x1
                layers.append(BasicBlock(self.in_channels, width, s, skip=self.skip, shortcut=self.shortcut))
            self.in_channels = width * self.block.expansion
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He et al. 2015 ("Delving deep into rectifiers"), as section 3.4 of the paper says.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Goyal et al. 2017 (section 5.1): the branch's last BatchNorm starts at zero, so F(x) = 0 and
            # every block with an identity shortcut starts as the identity. Not in the ResNet paper.
            for block in self.modules():
                if isinstance(block, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(block.bn2.weight if isinstance(block, BasicBlock) else block.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, N x num_classes."""
        check_input(x, channels=3, min_size=MIN_SIZE, model=f"ResNet-{self.depth}")
        x = self.conv1(x)  # N x 64 x H/2 x W/2
        x = self.maxpool(x)  # N x 64 x H/4 x W/4
        x = self.conv2_x(x)  # N x 64e x H/4 x W/4   (e = block expansion: 1 or 4)
        x = self.conv3_x(x)  # N x 128e x H/8 x W/8
        x = self.conv4_x(x)  # N x 256e x H/16 x W/16
        x = self.conv5_x(x)  # N x 512e x H/32 x W/32
        x = self.avgpool(x)  # N x 512e x 1 x 1
        x = torch.flatten(x, 1)  # N x 512e
        x = self.dropout(x)
        x = self.fc(x)  # N x num_classes
        return x

    def forward_stages(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """The output of every row of Table 1 (conv1 ... conv5_x, avgpool, fc), in order."""
        return record_stages(self, x, STAGES)


def resnet(
    depth: int,
    num_classes: int = 1000,
    *,
    skip: bool = True,
    shortcut: Shortcut = "B",
    dropout: float = 0.0,
    stride_on: StrideOn = "3x3",
    zero_init_residual: bool = False,
) -> ResNet:
    """The ResNet of `depth` (18, 34, 50, 101 or 152) as RESNET_SPECS gives it. zero_init_residual:
    start each block's residual branch at zero (its last BatchNorm weight), as torchvision's option."""
    block, counts = RESNET_SPECS[depth]
    return ResNet(
        block,
        counts,
        num_classes,
        skip=skip,
        shortcut=shortcut,
        dropout=dropout,
        stride_on=stride_on,
        zero_init_residual=zero_init_residual,
    )


# One builder per depth, as torchvision names them: resnet50(num_classes=4, skip=False) and so on.
resnet18 = partial(resnet, 18)
resnet34 = partial(resnet, 34)
resnet50 = partial(resnet, 50)
resnet101 = partial(resnet, 101)
resnet152 = partial(resnet, 152)


def paper_rows(depth: int) -> dict[str, tuple[int, int, int]]:
    """Table 1's output of each row at 224 px: (channels, height, width)."""
    e = RESNET_SPECS[depth][0].expansion
    return {
        "conv1": (64, 112, 112),
        "conv2_x": (64 * e, 56, 56),
        "conv3_x": (128 * e, 28, 28),
        "conv4_x": (256 * e, 14, 14),
        "conv5_x": (512 * e, 7, 7),
    }


# torchvision's IMAGENET1K_V1 files, the weights most published fine-tuning starts from.
_FILES = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
    152: "resnet152-394f9c45.pth",
}
_BUILDERS = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101, 152: resnet152}

INFO: dict[str, ModelInfo] = {
    f"resnet{depth}": ModelInfo(
        _BUILDERS[depth],
        input_size=224,
        min_size=MIN_SIZE,
        heads=("fc",),
        torchvision_file=_FILES[depth],
        paper_rows=paper_rows(depth),
        paper_gmacs=PAPER_GMACS[depth],
    )
    for depth in RESNET_SPECS
}
