"""Decode once: every image of a split as uint8 in one contiguous block, N x H x W x 3 in memory.

The block is seen as an N x 3 x H x W tensor in channels-last layout: the pixels lie as PIL decodes
them and as channels-last convolutions and torch's fast uint8 resampler read them, so neither the
decode nor an epoch transposes anything.

The brain-MRI dataset decodes to about 1 GB, so it fits in memory (or on a GPU) whole, and every
epoch after the first costs no decoding at all. The first pass decodes in threads (PIL releases
the GIL while decoding). Optionally the result is kept on disk, keyed by each file's path, size and
modification time, so a changed or new file is decoded again and the rest are not.
"""

import hashlib
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import PIL
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..files import atomic_write, remove_stale_temporaries
from .folder import (
    DECODE_ERRORS,
    NOT_AN_IMAGE,
    DatasetError,
    Scan,
    Skipped,
    crop_to_head,
    decode_hwc,
    image_size,
    scan_split,
)
from .transforms import fit_to

log = logging.getLogger("resnet_scratch.data")

# The safetensors entry names its layout (N x H x W x 3), so a cache of another layout is
# decoded again rather than misread.
CACHE_KEY = "pixels_nhwc"
# Bumped when what a cache file holds, or how its index is keyed, changes.
CACHE_FORMAT = 2


@dataclass
class Split:
    """A decoded split: images (uint8, N x 3 x H x W, channels-last), labels (int64, N), and where they came from."""

    name: str
    classes: list[str]
    images: Tensor
    labels: Tensor
    paths: list[str]
    skipped: list[Skipped]

    def __len__(self) -> int:
        return len(self.labels)

    def pixel_hashes(self, threads: int | None = None) -> list[str]:
        """A hash of each image's decoded pixels: equal hashes mean identical images."""
        rows = self.images.cpu().permute(0, 2, 3, 1).numpy()  # the memory as it lies: no copy per image
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
            return list(pool.map(pixel_digest, rows))

    def to(self, device: torch.device | str) -> "Split":
        """This split with its images and labels on `device`: one copy per run, not per epoch."""
        device = torch.device(device)
        here = self.images.device
        if here.type == device.type and (device.index is None or device.index == here.index):
            return self
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def counts(self) -> dict[str, int]:
        """Images per class."""
        per_label = Counter(self.labels.tolist())
        return {name: per_label.get(i, 0) for i, name in enumerate(self.classes)}


def pixel_digest(pixels: np.ndarray) -> str:
    """A hash of an H x W x 3 uint8 image's pixels: equal digests mean identical images."""
    return hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).hexdigest()


def _stamp(path: Path) -> tuple[int, ...]:
    """What says a file is unchanged: size and mtime (which `cp -p`, rsync -a and unzip can keep for
    other bytes), the inode (a file swapped in by rename) and the ctime (which no copy can set)."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _cache_file(cache_dir: Path, root: Path, split: str, size: tuple[int, int] | None, head_crop: bool) -> Path:
    # The format and the decoder's version too: another Pillow may decode the same bytes to other pixels.
    text = f"{root.resolve()}|{split}|{size}|{'head' if head_crop else 'whole'}|{CACHE_FORMAT}|{PIL.__version__}"
    return cache_dir / f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.safetensors"


def _read_cache(path: Path) -> tuple[Tensor, dict[str, list]] | None:
    """(images, {relative path: [*_stamp, row]}) from a cache file, or None if unusable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            index = json.loads(f.metadata()["index"])
            return f.get_tensor(CACHE_KEY), index
    except Exception:  # a missing, partial or foreign file is simply not used
        return None


def _write_cache(path: Path, images: Tensor, index: dict[str, list]) -> None:
    """Save the decoded split for the next run. The cache only saves time: when it cannot be written
    (a full disk, a read-only folder) the run goes on without it, and says so."""
    pixels = images.permute(0, 2, 3, 1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        atomic_write(path, lambda tmp: save_file({CACHE_KEY: pixels}, str(tmp), metadata={"index": json.dumps(index)}))
    except Exception as e:  # safetensors raises its own type on a full disk, not an OSError
        log.warning("decode cache not written to %s (%s); going on without it", path, " ".join(str(e).split()))


def _check_cache_dir(cache_dir: Path | None, root: Path) -> None:
    """A cache folder may not lie inside the dataset, which is never written."""
    if cache_dir is not None and Path(cache_dir).resolve().is_relative_to(root.resolve()):
        raise DatasetError(f"cache folder {cache_dir} is inside the dataset {root}, which is never written")


def _most_common(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common image size (1 x 1 when there is none)."""
    return Counter(sizes).most_common(1)[0][0] if sizes else (1, 1)


def _header(path: Path) -> tuple[int, int] | str:
    """An image's (height, width) from its header, or why it cannot be read."""
    try:
        return image_size(path)
    except DECODE_ERRORS as e:
        return f"cannot read: {type(e).__name__}: {e}"


def load_split(
    root: Path,
    split: str,
    *,
    classes: list[str] | None = None,
    size: tuple[int, int] | None = None,
    threads: int | None = None,
    cache_dir: Path | None = None,
    strict: bool = False,
    head_crop: bool = False,
) -> Split:
    """Scan and decode root/split into one uint8 tensor.

    size: (H, W) to store at; by default the most common image size. An image of another size is
    resized with its aspect ratio kept so that it covers the store's size, then centre-cropped to it
    (counted in the log). head_crop: crop every image to the head's bounding box first
    (folder.crop_to_head), so that framing and borders carry less of the label. Unreadable files are skipped
    with a warning naming each one; strict=True raises DatasetError listing them instead.
    """
    root = Path(root)
    started = time.perf_counter()
    scan: Scan = scan_split(root, split, classes)
    _check_cache_dir(cache_dir, root)
    skipped = list(scan.skipped)
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        headers = list(pool.map(_header, scan.paths))
        keep = [i for i, h in enumerate(headers) if not isinstance(h, str)]
        skipped += [Skipped(str(scan.paths[i]), h) for i, h in enumerate(headers) if isinstance(h, str)]
        h, w = size or _most_common([headers[i] for i in keep])

        cache_path = _cache_file(Path(cache_dir), root, split, (h, w), head_crop) if cache_dir else None
        found = _read_cache(cache_path) if cache_path is not None and cache_path.is_file() else None
        cached, index = found if found is not None else (None, {})

        pixels_nhwc = torch.empty(len(keep), h, w, 3, dtype=torch.uint8)
        images = pixels_nhwc.permute(0, 3, 1, 2)  # N x 3 x H x W, channels-last
        out = pixels_nhwc.numpy()  # a view: threads write decoded pixels straight into the tensor
        new_index: dict[str, list] = {}

        def fill(slot: int) -> str | bool:
            """Decode (or copy from the cache) into row `slot`: a failure reason, or whether resized."""
            path = scan.paths[keep[slot]]
            rel = str(path.relative_to(root))
            stamp = _stamp(path)
            hit = index.get(rel)
            if cached is not None and hit is not None and tuple(hit[:-1]) == stamp:
                out[slot] = cached[hit[-1]].numpy()
                new_index[rel] = [*stamp, slot]
                return False
            try:
                pixels = decode_hwc(path)
            except DECODE_ERRORS as e:
                return f"cannot decode: {type(e).__name__}: {e}"
            if head_crop:
                pixels = crop_to_head(pixels)
            resize = pixels.shape[:2] != (h, w)
            if resize:
                pixels = fit_to(pixels, h, w)
            out[slot] = pixels
            new_index[rel] = [*stamp, slot]
            return resize

        failures = list(pool.map(fill, range(len(keep))))

    resized = sum(1 for f in failures if f is True)
    bad = {slot for slot, reason in enumerate(failures) if isinstance(reason, str)}
    skipped += [Skipped(str(scan.paths[keep[b]]), failures[b]) for b in sorted(bad)]
    labels = torch.tensor([scan.labels[i] for i in keep], dtype=torch.int64)
    paths = [str(scan.paths[i]) for i in keep]
    if bad:  # rare: compact the tensor rather than leave rows of undefined pixels
        images, labels, paths, new_index = _without(bad, images, labels, paths, new_index)
    _check_skipped(root, split, scan, labels, skipped, check_classes=classes is None, strict=strict)
    if resized:
        log.warning("%s: resized %d image(s) to %dx%d", split, resized, h, w)
    if cache_path is not None and new_index != index:
        _write_cache(cache_path, images, new_index)
    log.info("%s: %d images decoded in %.1f s", split, len(labels), time.perf_counter() - started)
    return Split(split, scan.classes, images, labels, paths, skipped)


def _without(
    bad: set[int], images: Tensor, labels: Tensor, paths: list[str], index: dict[str, list]
) -> tuple[Tensor, Tensor, list[str], dict[str, list]]:
    """The store without the rows in `bad`, its cache index renumbered."""
    good = torch.tensor([s for s in range(len(paths)) if s not in bad], dtype=torch.long)
    images, labels = images[good].contiguous(memory_format=torch.channels_last), labels[good]
    rows = {old: new for new, old in enumerate(good.tolist())}
    index = {rel: entry[:-1] + [rows[entry[-1]]] for rel, entry in index.items() if entry[-1] in rows}
    return images, labels, [paths[s] for s in good.tolist()], index


def _check_skipped(
    root: Path, split: str, scan: Scan, labels: Tensor, skipped: list[Skipped], check_classes: bool, strict: bool
) -> None:
    """Every class keeps an image (when the split defines the classes); skipped files are logged, or with
    strict raised as one DatasetError listing them."""
    if check_classes:
        empty = [name for i, name in enumerate(scan.classes) if not (labels == i).any()]
        if empty:
            raise DatasetError(
                f"class folder(s) {', '.join(empty)} of {root / split} have no readable images: "
                "fix or remove them (every class folder becomes a class of the model)"
            )
    problems = [s for s in skipped if s.reason != NOT_AN_IMAGE]
    if problems and strict:
        listing = "\n".join(f"  {s.path}: {s.reason}" for s in problems)
        raise DatasetError(f"{len(problems)} problem(s) in {root / split}:\n{listing}")
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    if skipped:
        log.warning("%s: skipped %d file(s) of %d", split, len(skipped), len(scan.paths) + len(scan.skipped))


def load_folder(folder: Path, **options: object) -> Split:
    """A folder of class folders, decoded as load_split decodes a split (options as load_split's)."""
    folder = Path(folder)
    return load_split(folder.parent, folder.name, **options)
