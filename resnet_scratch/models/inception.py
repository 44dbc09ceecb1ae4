"""InceptionV3, after Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (2016).

Module names (Conv2d_1a_3x3 ... Mixed_7c, AuxLogits) are those of the authors' TF-slim release, the
graph that the ImageNet weights were trained as; the paper's Table 1 lists the same layers as rows.
Modules A-E are the paper's Figures 5, 6 and 7 and the two grid-size reductions (Figure 10).
"""

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .common import ModelInfo, check_input, record_stages


class InceptionOutputs(NamedTuple):
    """What InceptionV3 returns in training mode when it has an auxiliary classifier."""

    logits: Tensor
    aux_logits: Tensor


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BN -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        # eps=1e-3 is TensorFlow's default, which the reference weights were trained with; with
        # PyTorch's 1e-5 the converted network would not reproduce their outputs.
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        """Conv, BN, ReLU."""
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class InceptionA(nn.Module):
    """35x35 module (Figure 5): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        # The release uses one 5x5 here where Figure 5 draws two 3x3s; we follow the weights.
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Four parallel branches, concatenated along channels."""
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_1(x)
        b5 = self.branch5x5_2(b5)
        b3 = self.branch3x3dbl_1(x)
        b3 = self.branch3x3dbl_2(b3)
        b3 = self.branch3x3dbl_3(b3)
        bp = F.avg_pool2d(x, 3, stride=1, padding=1)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b5, b3, bp], 1)  # N x (224 + pool_features) x H x W


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Figure 10): strided 3x3 | 1x1->3x3->strided 3x3 | max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        """Three parallel branches, each halving the grid, concatenated."""
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_1(x)
        bd = self.branch3x3dbl_2(bd)
        bd = self.branch3x3dbl_3(bd)
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, bd, bp], 1)  # N x (480 + C_in) x H/2 x W/2


class InceptionC(nn.Module):
    """17x17 module (Figure 6): n x n convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Four parallel branches, concatenated along channels."""
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_1(x)
        b7 = self.branch7x7_2(b7)
        b7 = self.branch7x7_3(b7)
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_2(bd)
        bd = self.branch7x7dbl_3(bd)
        bd = self.branch7x7dbl_4(bd)
        bd = self.branch7x7dbl_5(bd)
        bp = F.avg_pool2d(x, 3, stride=1, padding=1)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b7, bd, bp], 1)  # N x 768 x H x W


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1->strided 3x3 | 1x1->1x7->7x1->strided 3x3 | max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        """Three parallel branches, each halving the grid, concatenated."""
        b3 = self.branch3x3_1(x)
        b3 = self.branch3x3_2(b3)
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_2(b7)
        b7 = self.branch7x7x3_3(b7)
        b7 = self.branch7x7x3_4(b7)
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, b7, bp], 1)  # N x (512 + C_in) x H/2 x W/2


class InceptionE(nn.Module):
    """8x8 module (Figure 7): expanded filter banks, 3x3 split into parallel 1x3 and 3x1."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Four parallel branches (two of them forking again), concatenated."""
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_1(x)
        bd = self.branch3x3dbl_2(bd)
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = F.avg_pool2d(x, 3, stride=1, padding=1)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b3, bd, bp], 1)  # N x 2048 x H x W


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid (section 4): a regulariser during training."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits from the 17x17 features: N x 768 x 17 x 17 -> N x num_classes."""
        x = F.avg_pool2d(x, 5, stride=3)  # N x 768 x 5 x 5
        x = self.conv0(x)  # N x 128 x 5 x 5
        x = self.conv1(x)  # N x 768 x 1 x 1
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)  # N x 768
        return self.fc(x)


# The rows whose outputs forward_stages returns, in order.
STAGES = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5d",
    "Mixed_6e",
    "Mixed_7c",
    "avgpool",
    "fc",
)

# Smallest input whose grid survives every unpadded strided layer (1x1 at Mixed_7c) ...
MIN_SIZE = 75
# ... and, in training with the auxiliary head, whose 17x17 grid is large enough for the head's
# 5x5 pool and 5x5 conv: the paper's 299.
MIN_SIZE_AUX = 299


class InceptionV3(nn.Module):
    """InceptionV3 for 299x299 inputs; returns (logits, aux_logits) in training with aux_logits."""

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        aux_logits: bool = True,
        dropout: float = 0.5,
        transform_input: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Truncated normals as in the TF-slim release: std 0.1 in general, smaller in the
        # auxiliary head, whose gradients would otherwise dominate early training.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.1, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.AuxLogits is not None:
            nn.init.trunc_normal_(self.AuxLogits.conv1.conv.weight, std=0.01, a=-2, b=2)
            nn.init.trunc_normal_(self.AuxLogits.fc.weight, std=0.001, a=-2, b=2)

    def _transform_input(self, x: Tensor) -> Tensor:
        # Google's weights expect pixels scaled to [-1, 1]; this turns an ImageNet-normalised
        # input ((x - mean) / std) into that, so one data pipeline serves all three families.
        # Per channel, with Python-float constants, so the rounding equals the reference's.
        ch0 = x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        ch1 = x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        ch2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat([ch0, ch1, ch2], 1)

    def forward(self, x: Tensor) -> Tensor | InceptionOutputs:
        """Logits; in training mode with the auxiliary head, InceptionOutputs(logits, aux_logits)."""
        aux_active = self.training and self.AuxLogits is not None
        check_input(x, channels=3, min_size=MIN_SIZE_AUX if aux_active else MIN_SIZE, model="InceptionV3")
        if self.transform_input:
            x = self._transform_input(x)
        x = self.Conv2d_1a_3x3(x)  # N x 32 x 149 x 149   (sizes for a 299 x 299 input)
        x = self.Conv2d_2a_3x3(x)  # N x 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)  # N x 64 x 147 x 147
        x = self.maxpool1(x)  # N x 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)  # N x 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)  # N x 192 x 71 x 71
        x = self.maxpool2(x)  # N x 192 x 35 x 35
        x = self.Mixed_5b(x)  # N x 256 x 35 x 35
        x = self.Mixed_5c(x)  # N x 288 x 35 x 35
        x = self.Mixed_5d(x)  # N x 288 x 35 x 35
        x = self.Mixed_6a(x)  # N x 768 x 17 x 17
        x = self.Mixed_6b(x)
        x = self.Mixed_6c(x)
        x = self.Mixed_6d(x)
        x = self.Mixed_6e(x)  # N x 768 x 17 x 17
        aux = self.AuxLogits(x) if aux_active else None  # the auxiliary head reads the 17x17 grid
        x = self.Mixed_7a(x)  # N x 1280 x 8 x 8
        x = self.Mixed_7b(x)  # N x 2048 x 8 x 8
        x = self.Mixed_7c(x)  # N x 2048 x 8 x 8
        x = self.avgpool(x)  # N x 2048 x 1 x 1
        x = torch.flatten(x, 1)  # N x 2048
        x = self.dropout(x)
        x = self.fc(x)  # N x num_classes
        return InceptionOutputs(x, aux) if aux is not None else x

    def forward_stages(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """The output of every row of the paper's Table 1 that has a module, in order."""
        return record_stages(self, x, STAGES)


def inception_v3(
    num_classes: int = 1000,
    *,
    aux_logits: bool = True,
    dropout: float = 0.5,
    transform_input: bool = False,
) -> InceptionV3:
    """InceptionV3 (299x299 input) with its auxiliary classifier unless aux_logits=False."""
    return InceptionV3(num_classes, aux_logits=aux_logits, dropout=dropout, transform_input=transform_input)


INFO: dict[str, ModelInfo] = {
    # torchvision's file expects transform_input=True (its weights were trained on [-1, 1] pixels).
    "inception_v3": ModelInfo(
        inception_v3,
        input_size=299,
        min_size=MIN_SIZE,
        heads=("fc", "AuxLogits.fc"),
        torchvision_file="inception_v3_google-0cc3c7bd.pth",
    ),
}
