"""Intensity augmentations of a whole batch (N x C x H x W float pixels), on the batch's device: the
random convolutions GIN and RandConv, and SLAug's random intensity curves (location-scale), for a model
that must not learn the kind of scan from its intensities.

Gamma, contrast and brightness (transforms.photometric_jitter) keep the order of a slice's
intensities; these need not, which is what separates a T1 slice from a T2 one. Randomness comes only
from the torch.Generator passed in, as in transforms.py, so a seed fixes every batch.
"""

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .folder import HEAD_FLOOR, HEAD_LEVEL
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
    N(0, 1 / (k^2 C)), LeCun's initialisation. A 1 x 1 kernel only changes the gain, but a negative one
    inverts the slice. Larger kernels change texture as well. Departures from the paper: filters drawn
    per image rather than per batch; one output channel, repeated. images: N x C x H x W float, 0..255.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"randconv: kernel = {kernel} must be odd and at least 1")
    n, c = images.shape[:2]
    k = 2 * int(torch.randint(0, kernel // 2 + 1, (1,), generator=generator)) + 1
    w = random_filters(n, 1, c, k, (1.0 / (k * k * c)) ** 0.5, images.device, generator)
    return mix(images, per_image_conv(images.float() / 255, w), p, blend, generator, keep_norm=False)


def bezier_lookup(n: int, generator: torch.Generator | None, invert: float, points: int = 512) -> Tensor:
    """n random intensity curves on [0, 1], as SLAug draws them: a cubic Bezier curve from (0, 0) to (1, 1)
    whose two inner control points are uniform in the unit square. Each curve is sampled at `points`
    values of t, and x and y are sorted, so that the curve rises; with probability `invert` y is sorted
    the other way, and the curve falls (dark turns bright). Returns (x, y), each n x points, x ascending."""
    draw = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    basis = torch.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3])  # 4 x points
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64).expand(n, 2)
    x = torch.stack([ends[:, 0], draw[:, 0], draw[:, 1], ends[:, 1]], dim=1) @ basis
    y = torch.stack([ends[:, 0], draw[:, 2], draw[:, 3], ends[:, 1]], dim=1) @ basis
    falls = (draw[:, 4] < invert).view(n, 1)
    rising = y.sort(dim=1).values
    return x.sort(dim=1).values, torch.where(falls, rising.flip(1), rising)


def interpolate(v: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Piecewise-linear y(v) per row: v is n x m, x (ascending) and y are n x points, as numpy.interp."""
    right = torch.searchsorted(x, v.contiguous()).clamp(1, x.shape[1] - 1)
    x0, x1 = x.gather(1, right - 1), x.gather(1, right)
    y0, y1 = y.gather(1, right - 1), y.gather(1, right)
    w = ((v - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return y0 + w * (y1 - y0)


def through_curve(v: Tensor, x: Tensor, y: Tensor, steps: int = 1024) -> Tensor:
    """`interpolate` for many pixels (v: N x M in [0, 1]): the curve is first tabulated at `steps` + 1
    even levels, then each pixel is read off the table, linearly between its two nearest levels."""
    levels = torch.linspace(0, 1, steps + 1, dtype=v.dtype, device=v.device).expand(v.shape[0], -1)
    table = interpolate(levels, x.to(v.dtype), y.to(v.dtype))
    at = v.clamp(0, 1) * steps
    low = at.floor().long().clamp(max=steps - 1)
    w = at - low
    return table.gather(1, low) * (1 - w) + table.gather(1, low + 1) * w


def head_background(grey: Tensor) -> Tensor:
    """Which pixels of each image (N x H x W grey levels in [0, 1]) lie outside the head: the dark pixels
    that a straight line along their row or column joins to the image's border through dark pixels only.
    Dark is at or below a tenth of the image's 99th percentile, and at least 8 grey levels of 255, as
    crop_to_head finds the head. Dark tissue inside the head (fluid, a necrotic core) is walled in by
    brighter tissue, so it is not background: it is remapped with the rest of the head."""
    flat = grey.flatten(1)[:, ::4]  # every fourth pixel is enough for a percentile, at a quarter of the work
    p99 = flat.kthvalue(max(1, math.ceil(0.99 * flat.shape[1])), dim=1).values
    dark = (grey <= (HEAD_LEVEL * p99).clamp_min(HEAD_FLOOR / 255).view(-1, 1, 1)).to(torch.uint8)
    outside = torch.zeros_like(dark)
    for dim in (1, 2):  # from each border inwards: dark all the way from the border
        outside |= dark.cummin(dim).values
        outside |= dark.flip(dim).cummin(dim).values.flip(dim)
    return outside.bool()


def foreground_quantiles(values: Tensor, background: Tensor, qs: tuple[float, ...]) -> list[Tensor]:
    """Per row of values (N x M), the qs quantiles of the pixels that are not background (nearest rank);
    0 for a row that is all background."""
    ranked = torch.where(background, torch.inf, values).sort(dim=1).values
    count = (~background).sum(dim=1)
    out = []
    for q in qs:
        at = ((count - 1).clamp_min(0) * q).floor().long().unsqueeze(1)
        out.append(torch.where(count > 0, ranked.gather(1, at).squeeze(1), torch.zeros_like(count, dtype=values.dtype)))
    return out


def cut_shift(curved: Tensor, background: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """The shift of each image (curved: N x M in [0, 1]; scale and shift: N), cut so that after
    curved * scale + shift the head's 20th and 80th percentiles land inside [0, 1], where their spread
    allows; where it does not ((p80 - p20) * scale > 1), the 20th lands at 0. Background pixels play no
    part in it."""
    low, high = foreground_quantiles(curved, background, (0.2, 0.8))
    return torch.maximum(torch.minimum(shift, 1 - high * scale), -low * scale)


def location_scale(
    images: Tensor, generator: torch.Generator | None = None, p: float = 0.5, invert: float = 0.5
) -> Tensor:
    """SLAug's location-scale augmentation (Su et al., AAAI 2023), adapted to a classifier.

    Each chosen image (probability p) goes through its own random Bezier intensity curve
    (`bezier_lookup`), which falls with probability `invert`. A random scale, N(1, 0.1^2) cut to
    [0.9, 1.1], and a shift, N(0, 0.5^2), follow. Pixels outside the head
    (`head_background`) keep their value.

    How it departs from SLAug. SLAug's global curve always rises; its local curves, one per labelled
    region of a segmentation, fall for the background and, half the time, for each class. It then fuses
    the two views by saliency (where the loss reacts most to a pixel). A classifier has no labelled
    regions, so here one curve remaps the whole head, and falls half the time, as a class region's does.
    A falling curve here is sorted, hence monotone, and spans [0, 1] rather than the image's own range.
    images: N x C x H x W float, 0..255; returns 0..255 units. Channel 0 decides the head and the
    percentiles (`cut_shift`), as the slices are grey; the curve, scale and shift act alike on every channel.
    """
    n = images.shape[0]
    x, y = bezier_lookup(n, generator, invert)
    draw = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    chosen = torch.rand(n, generator=generator, dtype=torch.float64) < p
    scale, shift = (1 + 0.1 * draw[:, 0]).clamp(0.9, 1.1), 0.5 * draw[:, 1]
    out = images.float().clone()
    if not chosen.any():
        return out
    x, y, scale, shift = (to_device(t[chosen].float(), images.device) for t in (x, y, scale, shift))
    rows = to_device(chosen, images.device)
    v = (out[rows] / 255).clamp(0, 1)
    background = head_background(v[:, 0]).flatten(1)
    v = v.flatten(2)  # chosen x C x HW
    curved = through_curve(v.flatten(1), x, y).view_as(v)
    shift = cut_shift(curved[:, 0], background, scale, shift)
    remapped = (curved * scale.view(-1, 1, 1) + shift.view(-1, 1, 1)).clamp(0, 1)
    remapped = torch.where(background.unsqueeze(1), v, remapped)
    out[rows] = remapped.view_as(out[rows]) * 255
    return out
