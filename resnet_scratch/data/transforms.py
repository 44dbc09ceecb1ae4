"""Augmentation and preprocessing as pure functions of a whole batch (N x C x H x W), CPU or CUDA.

Randomness comes only from the torch.Generator passed in, so a seed fixes every batch. Sampling
follows torchvision's RandomResizedCrop exactly (10 tries, then a centre crop clamped to the ratio
range). The resampling is one grid_sample call for the whole batch on a GPU, and on a CPU torch's
uint8 resampler per image, reading the crop straight from the channels-last store; normalisation
runs last, a cache-sized block at a time, and can round to bfloat16 for autocast.
"""

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..models.common import IMAGENET_MEAN, IMAGENET_STD

Stats = tuple[float, float, float]


def gather(images: Tensor, idx: Tensor) -> Tensor:
    """images[idx] in the store's layout: a channels-last store is gathered as the N x H x W x C block it
    is in memory, one copy per image (images[idx] copies element by element in this layout; docs/benchmarks.md)."""
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last):
        return images.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)
    return images.index_select(0, idx)


def crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    tries: int = 10,
) -> Tensor:
    """n crop boxes (top, left, h, w) with RandomResizedCrop's sampling, as an n x 4 int64 tensor.

    Per image: up to `tries` draws of an area fraction (uniform in `scale`) and a log-uniform aspect
    ratio; the first draw that fits the image wins. If none fits, a centre crop of the whole image
    with its aspect ratio clamped to `ratio`.
    """
    area = height * width
    target_area = area * torch.empty(n, tries, dtype=torch.float64).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, tries, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target_area * aspect)).long()
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.argmax(fits.long(), dim=1)  # index of the first fitting try (0 if none fits)
    any_fit = fits.any(dim=1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]

    # Fallback: the whole image, cropped to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    # Uniform integer offsets in [0, H - h] and [0, W - w], as torch.randint would draw them.
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    top = torch.floor(u[:, 0] * (height - h + 1)).long()
    left = torch.floor(u[:, 1] * (width - w + 1)).long()
    top = torch.where(any_fit, top, (height - h) // 2)
    left = torch.where(any_fit, left, (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def resized_crops(images: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop every image to its box and resize it to size x size (bilinear), in one grid_sample.

    images: N x C x H x W float; boxes: N x 4 (top, left, h, w); flip: optional N bools, mirrored
    horizontally by negating the sampling grid's x axis (free: no extra pass over the pixels).
    """
    n, _, height, width = images.shape
    b = to_device(boxes, images.device).to(images.dtype)
    top, left, h, w = b.unbind(1)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1]
    # (align_corners=False: pixel centres). The crop box is an axis-aligned scale + shift.
    sx, sy = w / width, h / height
    tx = (2 * left + w) / width - 1
    ty = (2 * top + h) / height - 1
    if flip is not None:
        sx = torch.where(to_device(flip, images.device), -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def uint8_crops(
    images: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None, rows: Tensor | None = None
) -> Iterator[Tensor]:
    """The CPU path of resized_crops, one image at a time: 1 x C x size x size uint8, channels-last.

    Box i crops image rows[i] (image i without rows): given the whole store and a batch's rows, the
    crops are read in place and the batch is never gathered.

    One interpolate call per image (the boxes differ), on the crop's view of the channels-last
    store: there torch runs its vectorised fixed-point uint8 resampler, antialiased like
    torchvision's, which on a CPU beats one float grid_sample over the batch (docs/benchmarks.md).
    A flipped image is resampled from the mirrored crop, which equals mirroring the result (pixel
    centres map symmetrically) and copies the smaller crop instead of the output. One at a time, so
    that the next step can work on each result while it is still in the cache.
    """
    flips = flip.tolist() if flip is not None else [False] * len(boxes)
    sources = rows.tolist() if rows is not None else range(len(boxes))
    for i, ((top, left, h, w), k) in enumerate(zip(boxes.tolist(), sources)):
        crop = images[k : k + 1, :, top : top + h, left : left + w]
        if crop.stride(1) != 1:  # not the store's channels-last layout: copy the crop, not the whole store
            crop = crop.contiguous(memory_format=torch.channels_last)
        if flips[i]:
            crop = crop.flip(-1)
        yield F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def flip_mask(n: int, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """n booleans, each True with probability p."""
    return torch.rand(n, generator=generator) < p


def resize(images: Tensor, size: int) -> Tensor:
    """Shorter side to `size`, aspect kept (torchvision's Resize(int)), bilinear with antialiasing."""
    height, width = images.shape[-2:]
    if height <= width:
        out_h, out_w = size, int(size * width / height)
    else:
        out_h, out_w = int(size * height / width), size
    if (out_h, out_w) == (height, width):
        return images
    return F.interpolate(images, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)


def fit_to(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """One H x W x 3 uint8 image -> height x width x 3: its shorter side resized as `resize` does
    (so evaluation's stores and predict see the same pixels), then centre-cropped."""
    x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(2, 0, 1)[None]
    return center_crop(resize(x, max(height, width)), height, width)[0].permute(1, 2, 0).numpy()


def center_crop(images: Tensor, size: int, width: int | None = None) -> Tensor:
    """The central size x size (or size x width) window (torchvision's rounding of the offsets)."""
    out_h, out_w = size, width or size
    height, full_width = images.shape[-2:]
    if out_h > height or out_w > full_width:
        raise ValueError(f"center_crop to {out_h}x{out_w} needs images of at least that, got {height}x{full_width}")
    top = int(round((height - out_h) / 2.0))
    left = int(round((full_width - out_w) / 2.0))
    return images[..., top : top + out_h, left : left + out_w]


# Images per block in normalize_pixels: about 1 MB of float32, so a block's intermediate stays in L2.
BLOCK_ELEMENTS = 1 << 18


def per_channel(values: list[float], device: torch.device) -> Tensor:
    """A small float32 vector made on `device` itself (filled there, not copied from the host, so that a
    batch on a GPU never waits for the stream to drain)."""
    return torch.stack([torch.full((), v, dtype=torch.float32, device=device) for v in values])


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A small host tensor on `device` without making the host wait: through page-locked memory."""
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def normalize_blocks(
    blocks: Iterable[Tensor],
    n: int,
    dtype: torch.dtype = torch.float32,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
) -> Tensor:
    """A batch of n images that arrives as consecutive blocks (B x C x H x W, pixel values 0..255,
    uint8 or float) -> (x / 255 - mean) / std, N x C x H x W channels-last.

    Each block is converted to float32 and normalised (one multiply-add on (W, C) rows, so the
    innermost axis is long and not a broadcast) while it is in the cache, then rounded once to
    `dtype`: a bfloat16 batch is exactly the float32 batch cast to bfloat16, which is what autocast
    would hand the first convolution.
    """
    out = tmp = scale = shift = None
    start = 0
    for block in blocks:
        b, c, height, width = block.shape
        if out is None:
            out = torch.empty(n, height, width, c, dtype=dtype, device=block.device)
            scale = per_channel([1.0 / (255.0 * s) for s in std], block.device).repeat(width, 1)  # W x C
            shift = per_channel([-m / s for m, s in zip(mean, std)], block.device).repeat(width, 1)
        if dtype == torch.float32:
            work = out[start : start + b]
        else:
            if tmp is None or len(tmp) < b:
                tmp = torch.empty(b, height, width, c, device=block.device)
            work = tmp[:b]
        work.copy_(block.permute(0, 2, 3, 1))
        torch.addcmul(shift, work, scale, out=work)
        if dtype != torch.float32:
            out[start : start + b].copy_(work)
        start += b
    if out is None or start != n:
        raise ValueError(f"normalize_blocks expected {n} images, got {start}")
    return out.permute(0, 3, 1, 2)


def normalize_pixels(
    images: Tensor, dtype: torch.dtype = torch.float32, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD
) -> Tensor:
    """Pixel values 0..255 (uint8 or float) -> normalised dtype, channels-last (normalize_blocks
    over cache-sized blocks on a CPU, the whole batch at once elsewhere)."""
    n, c, height, width = images.shape
    block = max(1, BLOCK_ELEMENTS // (height * width * c)) if images.device.type == "cpu" else n
    return normalize_blocks((images[i : i + block] for i in range(0, n, block)), n, dtype, mean, std)


def unnormalize(
    batch: Tensor, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD, normalize: str = "fixed"
) -> Tensor:
    """Normalised N x 3 x H x W -> 0..1 pixels on the CPU, for display. A batch normalised per image
    has lost its pixel values: each image is shown stretched from its darkest to its brightest pixel."""
    batch = batch.float().cpu()
    if normalize != "fixed":
        low = batch.amin(dim=(1, 2, 3), keepdim=True)
        high = batch.amax(dim=(1, 2, 3), keepdim=True)
        return (batch - low) / (high - low).clamp_min(1e-6)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (batch * std_t + mean_t).clamp(0, 1)


# How a batch's pixel values become the network's input (the `normalize` setting).
NORMALIZATIONS = ("fixed", "image", "equalize")


def finish(batch: Tensor, dtype: torch.dtype, mean: Stats, std: Stats, normalize: str = "fixed") -> Tensor:
    """The last step of every path: a float N x C x H x W batch (0..255 unless an augmentation moved
    it) -> the network's input in `dtype`, channels-last.

    "fixed": (x / 255 - mean) / std with the model's statistics (ImageNet's). "image": each image
    minus its own mean, over its own standard deviation. "equalize": each image's histogram equalised
    (equalize), then as "image". With either of the last two, a scanner's gain and offset cannot reach
    the network. "image" keeps the relative differences of intensities; "equalize" keeps only their order.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize = {normalize!r}: must be one of {', '.join(NORMALIZATIONS)}")
    if normalize == "fixed":
        return normalize_pixels(batch, dtype, mean, std)
    if normalize == "equalize":
        batch = equalize(batch)
    return standardize(batch).to(dtype).contiguous(memory_format=torch.channels_last)


def to_grey(batch: Tensor) -> Tensor:
    """Every channel replaced by the mean of the channels (a grey slice stays as it is)."""
    return batch.mean(dim=1, keepdim=True).expand_as(batch).contiguous()


def standardize(batch: Tensor) -> Tensor:
    """Each image minus its mean, over its standard deviation (over all its channels and pixels). A
    flat image's deviation is taken as at least one grey level (1/255 of the range) so it stays finite."""
    flat = batch.float().flatten(1)
    mean = flat.mean(1)
    std = flat.std(1, correction=0).clamp_min(1.0)
    shape = (-1,) + (1,) * (batch.dim() - 1)
    return (batch.float() - mean.view(shape)) / std.view(shape)


def equalize(batch: Tensor, levels: int = 256) -> Tensor:
    """Each image's histogram equalised over `levels` grey levels, as 0..255 floats: a value becomes
    the share of the image's pixels at or below it, so every level is about equally common. The
    darkest level maps to 0 (the black background stays black, as in PIL's ImageOps.equalize).

    The image's range is first stretched to the levels (after an augmentation it need not be 0..255);
    all channels share one histogram. One bincount for the whole batch.
    """
    n = batch.shape[0]
    flat = batch.float().flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    q = ((flat - low) / (high - low).clamp_min(1e-6) * (levels - 1)).round().long()
    offsets = torch.arange(n, device=batch.device)[:, None] * levels
    counts = torch.bincount((q + offsets).flatten(), minlength=n * levels).view(n, levels).float()
    cdf = counts.cumsum(1) / flat.shape[1]
    first = cdf.gather(1, q.amin(1, keepdim=True))  # the share at the darkest level, mapped to 0
    mapped = (cdf.gather(1, q) - first) / (1 - first).clamp_min(1e-6)
    return (mapped * 255).view_as(batch)


# A batched augmentation of float pixels: (batch, generator) -> batch (train_transform's `intensity`).
Augment = Callable[[Tensor, torch.Generator | None], Tensor]


def photometric_jitter(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """What another scanner or sequence setting does to a slice's intensities, drawn per image:
    gamma in [0.7, 1.5] (log-uniform), contrast x[0.7, 1.3] about the image mean, brightness
    +-10% of the range, a Gaussian blur (sigma 0.3-1.2 px) on 30% of the images, and Gaussian
    noise up to 4% of the range. images: N x C x H x W float, 0..255; returns the changed batch (the
    input's memory is reused). On a GPU nothing waits for the device: the draws go over asynchronously,
    the blur is selected with torch.where, and the noise comes from a generator on the device (seeded
    from `generator`).
    """
    n = images.shape[0]
    draw = to_device(torch.rand(n, 6, generator=generator, dtype=torch.float64), images.device).to(images.dtype)
    per_image = (n, 1, 1, 1)
    gamma = torch.exp(math.log(0.7) + draw[:, 0] * math.log(1.5 / 0.7)).view(per_image)
    images.div_(255).clamp_(0, 1).pow_(gamma)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images.sub_(mean).mul_((0.7 + 0.6 * draw[:, 1]).view(per_image)).add_(mean)
    images.add_((draw[:, 2] * 0.2 - 0.1).view(per_image))
    blurred = (draw[:, 3] < 0.3).view(per_image)
    images = torch.where(blurred, gaussian_blur(images, 0.3 + 0.9 * draw[:, 4]), images)
    if images.device.type == "cpu":
        noise = torch.randn(images.shape, generator=generator).to(images.dtype)
    else:
        on_device = torch.Generator(device=images.device)
        on_device.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        noise = torch.randn(images.shape, generator=on_device, device=images.device, dtype=images.dtype)
    images.add_(noise.mul_((0.04 * draw[:, 5]).view(per_image)))
    return images.clamp_(0, 1).mul_(255)


def gaussian_blur(images: Tensor, sigma: Tensor, radius: int = 2) -> Tensor:
    """Each image blurred with its own sigma (a (2 radius + 1)^2 Gaussian, reflect-padded)."""
    n, c, h, w = images.shape
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    k1 = torch.exp(-(x[None, :] ** 2) / (2 * sigma[:, None].to(images.dtype) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # n x (2r + 1)
    kernel = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]  # n*c x 1 x k x k
    padded = F.pad(images.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernel, groups=n * c).reshape(n, c, h, w)


def train_transform(
    images: Tensor,
    size: int,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    dtype: torch.dtype = torch.float32,
    rows: Tensor | None = None,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    photometric: bool = False,
    intensity: Sequence[Augment] = (),
    normalize: str = "fixed",
    grey: bool = False,
) -> Tensor:
    """uint8 batch -> random resized crop (area fraction in `scale`, aspect ratio in `ratio`) + horizontal
    flip (+ photometric_jitter if `photometric`, then each of `intensity` in order, e.g. gin and randconv)
    + normalisation (`finish`), channels-last.

    rows: the batch is images[rows] (e.g. the whole decoded store and a batch's indices); on a CPU
    the crops are then read straight from the store.

    One resampling: on a CPU the crops are resampled in uint8 (uint8_crops) and each is normalised
    as it comes, elsewhere in one float grid_sample over the batch (resized_crops); the crop boxes
    and flips are the same either way. dtype=torch.bfloat16 gives what bf16 autocast feeds the first
    convolution, at half the bytes.
    """
    n, height, width = len(images) if rows is None else len(rows), images.shape[2], images.shape[3]
    boxes = crop_boxes(n, height, width, scale, ratio, generator)
    flips = flip_mask(n, flip_p, generator)
    plain = not (photometric or intensity or grey) and normalize == "fixed"
    if images.device.type == "cpu" and images.dtype == torch.uint8:
        crops = uint8_crops(images, boxes, size, flips, rows)
        if plain:
            return normalize_blocks(crops, n, dtype, mean, std)
        batch = torch.cat([crop.float() for crop in crops])
    else:
        source = images if rows is None else gather(images, rows)
        batch = resized_crops(source.to(torch.float32), boxes, size, flips)  # 0..255 floats
    if grey:
        batch = to_grey(batch)
    if photometric:
        batch = photometric_jitter(batch, generator)
    for augment in intensity:
        batch = augment(batch, generator)
    return finish(batch, dtype, mean, std, normalize)


def eval_transform(
    images: Tensor,
    size: int,
    resize_to: int | None = None,
    rows: Tensor | None = None,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    normalize: str = "fixed",
    grey: bool = False,
) -> Tensor:
    """uint8 batch -> resize (shorter side) + centre crop + normalisation (`finish`, as in training).

    resize_to defaults to size * 8 / 7, torchvision's ratio: 256 for 224, 342 for 299 (rounded up).
    rows: the batch is images[rows], as in train_transform.
    """
    resize_to = resize_to or eval_resize(size)
    if rows is not None:
        images = gather(images, rows)
    if images.device.type != "cpu" or images.dtype != torch.uint8:
        images = images.to(torch.float32)  # 0..255: normalize_pixels divides by 255
    # On a CPU the resize stays in uint8 (torch's fixed-point resampler, rounding like PIL's).
    crops = center_crop(resize(images, resize_to), size)
    if normalize == "fixed" and not grey:
        return normalize_pixels(crops, mean=mean, std=std)
    crops = crops.to(torch.float32)
    return finish(to_grey(crops) if grey else crops, torch.float32, mean, std, normalize)


def eval_resize(size: int) -> int:
    """The shorter side eval preprocessing resizes to before its centre crop: size * 256 / 224, rounded up."""
    return math.ceil(size * 256 / 224)
