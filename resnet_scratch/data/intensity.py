"""Random-convolution augmentations of a whole batch (N x C x H x W float pixels), on the batch's device:
GIN and RandConv, for a model that must not learn the kind of scan from its intensities.

Gamma, contrast and brightness (transforms.photometric_jitter) keep the order of a slice's
intensities; these need not, which is what separates a T1 slice from a T2 one. Randomness comes only
from the torch.Generator passed in, as in transforms.py, so a seed fixes every batch.
"""

import torch
from torch import Tensor
from torch.nn import functional as F

from .transforms import to_device


def random_filters(
    n: int,
    out_channels: int,
    in_channels: int,
    kernel: int,
    std: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor:
    """n stacks of random convolution filters, N(0, std^2), drawn on the CPU from `generator` and moved
    to `device`: (n * out_channels) x in_channels x kernel x kernel, for one grouped convolution."""
    w = torch.randn(n * out_channels, in_channels, kernel, kernel, generator=generator, dtype=torch.float32) * std
    return to_device(w, device)


def per_image_conv(x: Tensor, weights: Tensor, bias: Tensor | None = None) -> Tensor:
    """Each image of x (N x C x H x W) through its own filters (weights: N * out x C x k x k; bias: N * out),
    one grouped convolution for the batch, padded by repeating the border so that the size is kept."""
    n, c, h, w = x.shape
    k = weights.shape[-1]
    if k > 1:
        x = F.pad(x, (k // 2,) * 4, mode="replicate")
    return F.conv2d(x.reshape(1, n * c, *x.shape[2:]), weights, bias, groups=n).reshape(n, -1, h, w)


def mix(
    images: Tensor, remapped: Tensor, p: float, blend: float, generator: torch.Generator | None, keep_norm: bool
) -> Tensor:
    """Blend each image with its remapping: x' = a r + (1 - a) x, with x = images / 255 and a ~ U(0, blend)
    drawn per image. With keep_norm, x' is then scaled to x's norm (GIN's eq. 4). Each image is
    blended with probability p; the others pass unchanged. Returns 0..255 units."""
    n = images.shape[0]
    draw = to_device(torch.rand(n, 2, generator=generator, dtype=torch.float64), images.device).float()
    x = images.float() / 255
    per_image = (n, 1, 1, 1)
    a = (blend * draw[:, 0]).view(per_image)
    mixed = a * remapped.expand_as(x) + (1 - a) * x
    if keep_norm:
        norm_x = x.flatten(1).norm(dim=1).view(per_image)
        mixed = mixed * norm_x / mixed.flatten(1).norm(dim=1).clamp_min(1e-6).view(per_image)
    chosen = (draw[:, 1] < p).view(per_image)
    return torch.where(chosen, mixed * 255, images.float())


def gin(
    images: Tensor,
    generator: torch.Generator | None = None,
    p: float = 0.5,
    blend: float = 1.0,
    depth: int = 4,
    hidden: int = 2,
) -> Tensor:
    """Global intensity non-linear augmentation (GIN; Ouyang et al., IEEE TMI 2022).

    Each image passes through its own shallow network of random convolutions. There are `depth` layers
    of kernel 1 or 3 px (drawn per layer and batch), with weights and biases drawn from N(0, 1) and a
    leaky ReLU (slope 0.01) between layers. The result is blended with the image and keeps its norm
    (`mix`). The biases make the remapping depend on the intensity level, so bright can turn dark.
    Gamma and contrast never do that, yet it is what separates a T1 slice from a T2 one.

    images: N x C x H x W float, 0..255 (the network sees images / 255); returns 0..255 units, which
    may leave the range. Departures from the paper: one output channel, repeated, because the slices
    are grey; borders padded by repetition.
    """
    n = images.shape[0]
    kernels = torch.randint(0, 2, (depth,), generator=generator).tolist()
    z = images.float() / 255
    for layer, k in enumerate(kernels):
        out = 1 if layer == depth - 1 else hidden
        w = random_filters(n, out, z.shape[1], 2 * k + 1, 1.0, images.device, generator)
        bias = to_device(torch.randn(n * out, generator=generator), images.device)
        z = per_image_conv(z, w, bias)
        if layer < depth - 1:
            z = F.leaky_relu(z, 0.01)
    return mix(images, z, p, blend, generator, keep_norm=True)


def randconv(
    images: Tensor, generator: torch.Generator | None = None, p: float = 0.5, blend: float = 1.0, kernel: int = 7
) -> Tensor:
    """RandConv (Xu et al., ICLR 2021): one random convolution, blended with the image (`mix`, their
    mixing variant, without rescaling).

    The kernel size is drawn per batch from the odd sizes 1 .. `kernel`. The weights come from
    N(0, 1 / (k^2 C)), He's initialisation. A 1 x 1 kernel only changes the gain, but a negative one
    inverts the slice. Larger kernels change texture as well. Departures from the paper: filters drawn
    per image rather than per batch; one output channel, repeated. images: N x C x H x W float, 0..255.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"randconv: kernel = {kernel} must be odd and at least 1")
    n, c = images.shape[:2]
    k = 2 * int(torch.randint(0, kernel // 2 + 1, (1,), generator=generator)) + 1
    w = random_filters(n, 1, c, k, (1.0 / (k * k * c)) ** 0.5, images.device, generator)
    return mix(images, per_image_conv(images.float() / 255, w), p, blend, generator, keep_norm=False)
