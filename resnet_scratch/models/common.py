"""Small pieces shared by the three families."""

from torch import Tensor


def check_input(x: Tensor, *, channels: int, min_size: int, model: str) -> None:
    """Raise a ValueError naming what `model` expects, before a shape error deep inside can.

    `min_size` is the smallest height/width the network's strided layers can reduce without
    running out of pixels; it is a property of the architecture, stated next to each model.
    """
    if x.dim() != 4:
        raise ValueError(
            f"{model} expects a batch shaped N x {channels} x H x W, got a {x.dim()}-d tensor "
            f"of shape {tuple(x.shape)}"
        )
    n, c, h, w = x.shape
    if c != channels:
        raise ValueError(
            f"{model} expects {channels} input channels (N x {channels} x H x W), got {c} "
            f"in shape {tuple(x.shape)}; grey images must be repeated to 3 channels first"
        )
    if h < min_size or w < min_size:
        raise ValueError(
            f"{model} needs inputs of at least {min_size}x{min_size} pixels, got {h}x{w}"
        )
