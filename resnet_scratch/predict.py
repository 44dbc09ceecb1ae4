"""Classify image files with a saved checkpoint, a batch at a time, optionally with Grad-CAM heatmaps.

Images are held one batch at a time however many files are named: each batch is decoded,
classified, printed and dropped before the next is read (what grows with the number of files is
their list of names and a line of results each). An unreadable file is reported by name and the
rest go on; so is an image much smaller than the model's input, whose prediction means little.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import torch

from .cli import reader_gone, silence
from .data.folder import DECODE_ERRORS, decode, image_files
from .explain import grad_cam
from .predictor import Predictor, Preprocess
from .report import new_figure, save_figure

# --explain PATH.png draws at most this many images in one grid; a folder gets one file per image.
GRID_LIMIT = 16


def list_images(paths: list[Path]) -> Iterator[Path | tuple[Path, str]]:
    """The files named, folders expanded to the images inside them (sorted, links not followed out);
    a folder's skipped entries come as (path, reason)."""
    for path in map(Path, paths):
        if path.is_dir():
            files, skipped = image_files(path)
            yield from files
            yield from ((Path(s.path), s.reason) for s in skipped)
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


def batches(items: Iterator, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_files(
    checkpoint: Path,
    paths: list[Path],
    as_json: bool = False,
    explain: Path | None = None,
    batch_size: int = 32,
    device_name: str = "auto",
    bf16: bool | None = None,
) -> list[dict]:
    """Print (and return) the class and per-class probabilities of every image, as each batch is done.

    as_json prints one JSON object per line (JSON Lines). explain: a .png path gets a grid of the first
    GRID_LIMIT images with their Grad-CAM heatmaps; any other path is a folder that gets one PNG per image.
    bf16: None autocasts where the device supports it, as `evaluate` does.
    """
    predictor = Predictor.load(checkpoint, device_name, bf16=bf16)
    model, classes, prep = predictor.model, predictor.classes, predictor.prep
    names = list(list_images(paths))  # paths only: cheap even for many thousands
    if not names:
        raise ValueError(f"no images found in {', '.join(map(str, paths))}")
    as_grid = explain is not None and Path(explain).suffix.lower() == ".png"
    grid: list[tuple[Path, torch.Tensor, torch.Tensor, dict]] = []
    results: list[dict] = []
    for group in batches(iter(names), batch_size):
        ready, pixels = [], []
        for item in group:
            if isinstance(item, tuple):  # what the folder scan skipped (by name, a link): listed, not an error
                results.append(emit({"path": str(item[0]), "skipped": item[1]}, classes, as_json))
                continue
            try:
                image = decode(item)
            except DECODE_ERRORS as e:
                results.append(
                    emit(
                        {"path": str(item), "error": f"not a readable image ({type(e).__name__}: {e})"},
                        classes,
                        as_json,
                    )
                )
                continue
            ready.append((item, image.shape[:2]))
            pixels.append(image)
        if not ready:
            continue
        store = torch.stack([prep.image(p) for p in pixels])
        logits = predictor.logits(store)
        # a grid stops taking images at GRID_LIMIT: no backward pass for the batches after it is full
        explaining = explain and (not as_grid or len(grid) < GRID_LIMIT)
        if explaining:
            batch = prep.batch(store.to(predictor.device), torch.arange(len(store), device=predictor.device))
            heatmaps, _ = grad_cam(model, batch, target=logits.argmax(1))  # the class printed
        for k, ((path, (h, w)), p) in enumerate(zip(ready, logits.softmax(1))):
            result = {
                "path": str(path),
                "class": classes[int(p.argmax())],
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)},
            }
            if min(h, w) < prep.size // 2:
                result["warning"] = f"only {w}x{h} px: enlarged to {prep.size} px, so this prediction means little"
            results.append(emit(result, classes, as_json))
            if explaining:
                keep_explanation(
                    Path(explain), grid, path, batch[k].cpu(), heatmaps[k].cpu(), result, prep, len(results)
                )
    if as_grid:
        save_grid(Path(explain), grid, prep, total=sum(1 for r in results if "class" in r))
        if not as_json:
            say(f"wrote {explain}")
    elif explain and not as_json:
        say(f"wrote one Grad-CAM image per file to {explain}/")
    return results


def printable(text: str) -> str:
    """`text` with every control character escaped (\\n, \\x1b, ...): a file name or a class name from
    a crafted checkpoint can neither forge a result line nor send terminal escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def emit(result: dict, classes: list[str], as_json: bool) -> dict:
    """Print one result as soon as it is known (errors and warnings also to stderr); returns it. JSON
    escapes by itself; plain text goes through printable()."""
    if as_json:
        say(json.dumps(result))
    elif "error" in result or "skipped" in result:
        say(printable(f"{result['path']}: skipped, {result.get('error') or result['skipped']}"))
    else:
        shown = "  ".join(f"{c} {100 * v:5.1f}%" for c, v in result["probabilities"].items())
        say(printable(f"{result['path']}: {result['class']}   ({shown})"))
    for key in ("error", "warning"):
        if key in result:
            say(printable(f"{key}: {result['path']}: {result[key]}"), sys.stderr)
    return result


def say(text: str, stream: TextIO | None = None) -> None:
    """Print a line at once. If its reader has gone (predict ... | head), the rest goes nowhere and the
    work goes on: an --explain file is still written, and the command still ends with its own status."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError as e:
        if not reader_gone(e):
            raise
        silence(stream)


def keep_explanation(
    explain: Path,
    grid: list,
    path: Path,
    image: torch.Tensor,
    heatmap: torch.Tensor,
    result: dict,
    prep: Preprocess,
    number: int,
) -> None:
    """Keep the image for the grid (at most GRID_LIMIT), or write its own PNG into the folder."""
    if explain.suffix.lower() == ".png":
        if len(grid) < GRID_LIMIT:
            grid.append((path, image, heatmap, result))
        return
    explain.mkdir(parents=True, exist_ok=True)
    # numbered in the order printed, so that two files of one name in two folders do not collide
    save_grid(explain / f"{number:05d}-{path.stem}.gradcam.png", [(path, image, heatmap, result)], prep, total=1)


def save_grid(
    out: Path, rows: list[tuple[Path, torch.Tensor, torch.Tensor, dict]], prep: Preprocess, total: int
) -> None:
    """One row per image: the preprocessed image and its Grad-CAM overlay."""
    from .explain import overlay

    fig = new_figure(6, 3 * max(len(rows), 1))
    axes = fig.subplots(max(len(rows), 1), 2, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (path, image, heat, r) in enumerate(rows):
        shown = prep.shown(image[None])[0]
        axes[row, 0].imshow(shown.permute(1, 2, 0).numpy())
        axes[row, 0].set_title(Path(path).name, fontsize=8)
        axes[row, 1].imshow(overlay(shown, heat).numpy())
        axes[row, 1].set_title(f"Grad-CAM: {r['class']} {100 * r['probabilities'][r['class']]:.0f}%", fontsize=8)
    if total > len(rows):
        fig.suptitle(f"the first {len(rows)} of {total} images; --explain FOLDER writes one file per image", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=100)
