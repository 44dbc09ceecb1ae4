"""Reference answers to the tutorial's exercises (docs/tutorial.md, section 7). Try each one before
you read it here; tests/test_exercises.py checks every answer against resnet_scratch."""

from torch import Tensor, nn

from resnet_scratch.models.resnet import BasicBlock, Bottleneck


# Exercise 1: our block's weights in your block.
def copy_weights(ours: nn.Module, yours: nn.Module) -> None:
    """Load `ours` into `yours`: strict, so a missing or misnamed layer is an error, not a silent skip."""
    yours.load_state_dict(ours.state_dict(), strict=True)


# Exercise 2: count the depth.
def depth(model: nn.Module) -> int:
    """The paper's depth: the layers with weights on the main path (convolutions outside the
    shortcuts, and fc). A projection shortcut is not counted, nor are BatchNorm layers."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and ".shortcut" not in f".{name}"]
    return len(convs) + sum(isinstance(m, nn.Linear) for m in model.modules())


# Exercise 3: a pre-activation block (He, Zhang, Ren and Sun, "Identity Mappings in Deep Residual
# Networks", ECCV 2016): BatchNorm and ReLU move before each convolution, and nothing follows the sum.
class PreActBlock(nn.Module):
    """x + F(x), with F = conv(relu(bn(conv(relu(bn(x)))))): the identity path is left untouched."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None  # the identity
        if stride != 1 or in_channels != out_channels:  # a projection of the pre-activated input
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(x).relu()
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.bn2(out).relu())
        return out + identity  # no ReLU after the sum


# Exercise 4: start every block as the identity.
def zero_init_residual(model: nn.Module) -> None:
    """Zero the weight of each block's last BatchNorm (its bias is zero already): F(x) = 0 at the start,
    so every block with an identity shortcut outputs relu(x) = x. torchvision's option of the same name."""
    for block in model.modules():
        if isinstance(block, Bottleneck):
            nn.init.zeros_(block.bn3.weight)
        elif isinstance(block, BasicBlock):
            nn.init.zeros_(block.bn2.weight)
