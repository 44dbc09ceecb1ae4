"""Scan an ImageFolder tree (root/<split>/<class>/<image>) and decode any image to uint8 RGB."""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger("resnet_scratch.data")

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
SPLITS = ("Training", "Testing")

# Decompression-bomb protection stays on; a decoding failure of any kind skips the file.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def default_root() -> Path:
    """The dataset: $RESNET_SCRATCH_DATA, else ../shared/data/brain-tumor-mri beside the checkout."""
    env = os.environ.get("RESNET_SCRATCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "brain-tumor-mri"


class DatasetError(ValueError):
    """A structural problem with a dataset folder, or unreadable files under strict=True."""


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why."""

    path: str
    reason: str


@dataclass
class Scan:
    """The image files of one split: paths, labels (indices into classes), and what was skipped."""

    root: Path
    split: str
    classes: list[str]
    paths: list[Path]
    labels: list[int]
    skipped: list[Skipped] = field(default_factory=list)


def hidden(name: str) -> bool:
    """Dot-files and folders (.ipynb_checkpoints, .DS_Store) and macOS's __MACOSX."""
    return name.startswith(".") or name == "__MACOSX"


def list_classes(split_dir: Path) -> list[str]:
    """Class folder names, sorted as torchvision's ImageFolder sorts them (so indices agree)."""
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not hidden(e.name))


def scan_split(root: Path, split: str, classes: list[str] | None = None) -> Scan:
    """List the images of root/split; raise DatasetError on a structural problem.

    `classes`, when given (the training split's), must equal this split's class folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    split_dir = root / split
    if not split_dir.is_dir():
        found = [e.name for e in os.scandir(root) if e.is_dir() and not hidden(e.name)]
        raise DatasetError(f"split {split!r} not found in {root}; found folders: {found or 'none'}")
    found_classes = list_classes(split_dir)
    if not found_classes:
        raise DatasetError(f"{split_dir} has no class folders; expected {split}/<class>/<image>")
    if classes is not None and found_classes != classes:
        raise DatasetError(
            f"{split_dir} has classes {found_classes}, expected the same as the training split: {classes}"
        )
    scan = Scan(root, split, found_classes, [], [])
    for label, name in enumerate(found_classes):
        count = 0
        for dirpath, dirnames, filenames in os.walk(split_dir / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not hidden(d))
            for filename in sorted(filenames):
                if hidden(filename):
                    continue
                path = Path(dirpath) / filename
                if path.suffix.lower() not in EXTENSIONS:
                    scan.skipped.append(Skipped(str(path), "not an image file extension"))
                    continue
                scan.paths.append(path)
                scan.labels.append(label)
                count += 1
        if count == 0:
            scan.skipped.append(Skipped(str(split_dir / name), "class folder has no images"))
    return scan


def to_rgb(image: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 from any PIL mode, EXIF orientation applied.

    16-bit and 32-bit grey images are rescaled to 0..255 (not clipped); alpha is composited on
    black; palette, CMYK and the rest go through PIL's conversion to RGB.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 65535.0
        else:  # 32-bit: 16-bit data (PNGs often open as "I") or arbitrary range
            lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
            scale = 255.0 if lo >= 0 and hi <= 255 else 65535.0 if lo >= 0 and hi <= 65535 else None
            if scale is None:
                a = (a - lo) / max(hi - lo, 1e-12) * 65535.0
                scale = 65535.0
        grey = np.clip(np.rint(a * (255.0 / scale)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("LA", "RGBA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255  # alpha over black
        return rgb.astype(np.uint8)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy, safe for torch.from_numpy


def decode(path: Path) -> np.ndarray:
    """Decode one file to H x W x 3 uint8; raises one of DECODE_ERRORS if it cannot."""
    with Image.open(path) as image:
        image.load()  # a truncated file fails here, not later
        return to_rgb(image)


def decode_hwc(path: Path) -> np.ndarray:
    """Decode one file to H x W x 3 uint8, ready to copy into the store (may be a read-only view).

    The dataset's two modes take a short path: a grey image is one plane seen three times, an RGB
    image is PIL's own buffer; no intermediate RGB image is made. Every other mode goes through to_rgb.
    """
    with Image.open(path) as image:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode == "L":
            grey = np.asarray(image)
            return np.broadcast_to(grey[:, :, None], (*grey.shape, 3))
        if image.mode == "RGB":
            return np.asarray(image)
        return to_rgb(image)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only."""
    with Image.open(path) as image:
        w, h = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
