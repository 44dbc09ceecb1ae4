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


# Where the data is when nothing says: --data, then these variables, then ../shared/data beside a
# checkout of this repository. An installed package (no checkout) has no default: it says how to get one.
DATA_VARIABLE, EXTERNAL_VARIABLE = "RESNET_SCRATCH_DATA", "RESNET_SCRATCH_EXTERNAL"
GET_DATASET = (
    "the dataset is Kaggle's 'Brain Tumor MRI Dataset' by Masoud Nickparvar (masoudnickparvar/brain-tumor-mri-dataset)"
)
POINT_TO_IT = "pass --data FOLDER (with Training/ and Testing/) or set $RESNET_SCRATCH_DATA to it"
NO_DATASET = f"no dataset: {POINT_TO_IT}; {GET_DATASET}"


def beside_checkout(name: str) -> Path | None:
    """../shared/data/<name> beside the checkout this package runs from; None for an installed copy."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout.parent / "shared" / "data" / name if (checkout / "pyproject.toml").is_file() else None


def dataset_root() -> Path | None:
    """The dataset: $RESNET_SCRATCH_DATA, else ../shared/data/brain-tumor-mri beside a checkout, else none."""
    env = os.environ.get(DATA_VARIABLE)
    return Path(env).expanduser() if env else beside_checkout("brain-tumor-mri")


def default_root() -> Path:
    """dataset_root(), or an error that says how to get the data and point to it."""
    root = dataset_root()
    if root is None:
        raise DatasetError(NO_DATASET)
    return root


def existing_root(root: str | Path | None) -> Path:
    """`root` as a Path if it is a folder; else an error that says how to get the data and point to it."""
    if root is None:
        raise DatasetError(NO_DATASET)
    if not Path(root).is_dir():
        raise DatasetError(f"dataset folder {root} does not exist: {POINT_TO_IT}; {GET_DATASET}")
    return Path(root)


def default_external_root() -> Path | None:
    """Other collections to score on: $RESNET_SCRATCH_EXTERNAL, else ../shared/data/external beside a
    checkout, else none (nothing else is scored); each folder in it is a folder of class folders."""
    env = os.environ.get(EXTERNAL_VARIABLE)
    return Path(env).expanduser() if env else beside_checkout("external")


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
    """Class folder names, sorted as torchvision's ImageFolder sorts them (so indices agree). A class
    folder may be a link to a folder outside the dataset (one assembled from elsewhere), never to a
    folder of the dataset itself: its own split, another split (Testing leaking into Training), or
    a folder above it."""
    return sorted(
        e.name
        for e in os.scandir(split_dir)
        if e.is_dir() and not hidden(e.name) and not looping_link(split_dir / e.name, split_dir)
    )


def looping_link(path: Path, split_dir: Path) -> bool:
    """Whether `path` is a link to a folder of the dataset that holds split_dir (split_dir itself, a
    folder inside it or beside it, as another split's class folder) or to a folder above it."""
    if not path.is_symlink():
        return False
    target, split = path.resolve(), Path(split_dir).resolve()
    return split.is_relative_to(target) or target.is_relative_to(split.parent)


NOT_AN_IMAGE = "not an image file extension"


def image_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """The image files under `folder` (sorted, hidden names left out) and what was skipped, with why.

    Links are never followed out of `folder`: a linked folder is not entered (a link to `..` would
    otherwise list every class again under this one), and a linked file counts only if it resolves
    to a file inside `folder`.
    """
    folder = Path(folder)
    inside = folder.resolve()
    files: list[Path] = []
    skipped: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            if hidden(d):
                continue
            if (here / d).is_symlink():
                skipped.append(Skipped(str(here / d), "a link to a folder: not followed"))
            else:
                kept.append(d)
        dirnames[:] = kept
        for filename in sorted(filenames):
            if hidden(filename):
                continue
            path = here / filename
            if path.is_symlink():
                target = path.resolve()
                if not target.is_file():
                    skipped.append(Skipped(str(path), "a broken link"))
                    continue
                if not target.is_relative_to(inside):
                    skipped.append(Skipped(str(path), f"a link to {target}, outside {folder}: not followed"))
                    continue
            if path.suffix.lower() not in EXTENSIONS:
                skipped.append(Skipped(str(path), NOT_AN_IMAGE))
                continue
            files.append(path)
    listed = {p.resolve() for p in files if not p.is_symlink()}
    twice = [p for p in files if p.is_symlink() and p.resolve() in listed]
    skipped += [Skipped(str(p), f"a link to {p.resolve().name}, listed already") for p in twice]
    return [p for p in files if p not in twice], skipped


def scan_split(root: Path, split: str, classes: list[str] | None = None) -> Scan:
    """List the images of root/split; raise DatasetError on a structural problem.

    `classes`, when given (the training split's), must equal this split's class folders. A split
    that defines the classes (classes=None) must have images in every class folder: an empty one
    would still be a class of the model.
    """
    root = existing_root(root)
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
    scan.skipped += [
        Skipped(str(split_dir / e.name), "a link to a folder of this dataset or above it: not followed")
        for e in os.scandir(split_dir)
        if not hidden(e.name) and e.is_dir() and looping_link(split_dir / e.name, split_dir)
    ]
    for label, name in enumerate(found_classes):
        files, skipped = image_files(split_dir / name)
        scan.paths += files
        scan.labels += [label] * len(files)
        scan.skipped += skipped
        if not files:
            if classes is None:
                raise DatasetError(
                    f"class folder {split_dir / name} has no images: remove it or add images "
                    "(every class folder of this split becomes a class of the model)"
                )
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
        a = np.asarray(image, dtype=np.float32)  # exact for 16-bit values, half float64's memory
        if mode.startswith("I;16"):
            scale = 65535.0
        else:  # 32-bit: 16-bit data (PNGs often open as "I") or arbitrary range
            lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
            scale = 255.0 if lo >= 0 and hi <= 255 else 65535.0 if lo >= 0 and hi <= 65535 else None
            if scale is None:
                a = (a - lo) / max(hi - lo, 1e-12) * 65535.0
                scale = 65535.0
        grey = np.clip(np.rint(a * np.float32(255.0 / scale)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("LA", "RGBA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255  # alpha over black
        return rgb.astype(np.uint8)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy, safe for torch.from_numpy


def refuse_huge(image: Image.Image) -> None:
    """Refuse an image of more than Pillow's MAX_IMAGE_PIXELS before it is decoded. Pillow itself only
    warns below twice that, and a small file can hold hundreds of megapixels (a decompression bomb)."""
    pixels = image.width * image.height
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
        raise Image.DecompressionBombError(
            f"{image.width}x{image.height} is {pixels / 1e6:.0f} megapixels, more than the "
            f"{Image.MAX_IMAGE_PIXELS / 1e6:.0f} this package decodes (PIL.Image.MAX_IMAGE_PIXELS)"
        )


def decode(path: Path) -> np.ndarray:
    """Decode one file to H x W x 3 uint8; raises one of DECODE_ERRORS if it cannot."""
    with Image.open(path) as image:
        refuse_huge(image)
        image.load()  # a truncated file fails here, not later
        return to_rgb(image)


def decode_hwc(path: Path) -> np.ndarray:
    """Decode one file to H x W x 3 uint8, ready to copy into the store (may be a read-only view).

    The dataset's two modes take a short path: a grey image is one plane seen three times, an RGB
    image is PIL's own buffer; no intermediate RGB image is made. Every other mode goes through to_rgb.
    """
    with Image.open(path) as image:
        refuse_huge(image)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode == "L":
            grey = np.asarray(image)
            return np.broadcast_to(grey[:, :, None], (*grey.shape, 3))
        if image.mode == "RGB":
            return np.asarray(image)
        return to_rgb(image)


# A pixel belongs to the head when it is brighter than this share of the image's 99th percentile;
# a row or column belongs to it when at least PROFILE_SHARE of its pixels do.
HEAD_LEVEL, PROFILE_SHARE = 0.1, 0.02
HEAD_FLOOR = 8  # grey levels of 255: at or below this a pixel is never the head, however dark the slice


def _main_run(profile: np.ndarray) -> tuple[int, int]:
    """[start, end) of the longest run of True in a boolean profile, bridging gaps shorter than 3% of
    its length (burned-in text beside the head is a separate, shorter run)."""
    on = np.flatnonzero(profile)
    if len(on) == 0:
        return 0, len(profile)
    gap = max(1, len(profile) * 3 // 100)
    breaks = np.flatnonzero(np.diff(on) > gap)
    starts = np.concatenate([[on[0]], on[breaks + 1]])
    ends = np.concatenate([on[breaks], [on[-1]]]) + 1
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best])


def crop_to_head(pixels: np.ndarray, margin: float = 0.04) -> np.ndarray:
    """The square around the head's bounding box (with a small margin), padded with black where it
    leaves the image: every slice is framed the same way, whatever its source's field of view."""
    grey = pixels.mean(2)
    level = max(HEAD_LEVEL * float(np.percentile(grey, 99)), float(HEAD_FLOOR))
    mask = grey > level
    top, bottom = _main_run(mask.mean(1) >= PROFILE_SHARE)
    left, right = _main_run(mask.mean(0) >= PROFILE_SHARE)
    side = max(bottom - top, right - left)
    side = max(8, round(side * (1 + 2 * margin)))
    cy, cx = (top + bottom) // 2, (left + right) // 2
    y0, x0 = cy - side // 2, cx - side // 2
    out = np.zeros((side, side, 3), dtype=np.uint8)
    h, w = grey.shape
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + side, h), min(x0 + side, w)
    out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = pixels[sy0:sy1, sx0:sx1]
    return out


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only."""
    with Image.open(path) as image:
        refuse_huge(image)
        w, h = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
