"""Classify image files with a saved checkpoint, optionally with Grad-CAM heatmaps."""

import json
from pathlib import Path

import torch

from .data.folder import DECODE_ERRORS, EXTENSIONS, decode, hidden
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from .explain import grad_cam, overlay
from .train import model_from_checkpoint


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, with folders expanded to the images inside them (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS
                            and not any(hidden(part) for part in p.relative_to(path).parts))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist")
    if not files:
        raise ValueError(f"no images found in {', '.join(map(str, paths))}")
    return files


def predict_files(checkpoint: Path, paths: list[Path], as_json: bool = False, explain: Path | None = None) -> list[dict]:
    """Print (and return) the class and per-class probabilities of every image."""
    model, meta = model_from_checkpoint(checkpoint)
    classes, size = meta["classes"], meta["input_size"]
    files = image_files(paths)
    pixels = []
    for path in files:
        try:
            pixels.append(torch.from_numpy(decode(path)).permute(2, 0, 1))
        except DECODE_ERRORS as e:
            raise ValueError(f"{path} is not a readable image ({type(e).__name__}: {e})") from None
    batch = torch.stack([eval_transform(p[None], size)[0] for p in pixels])
    if explain:
        heatmaps, logits = grad_cam(model, batch)
    else:
        with torch.no_grad():
            logits = model(batch)
    probabilities = logits.float().softmax(1)
    results = [
        {"path": str(path), "class": classes[int(p.argmax())],
         "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}}
        for path, p in zip(files, probabilities)
    ]
    if as_json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            shown = "  ".join(f"{c} {100 * v:5.1f}%" for c, v in r["probabilities"].items())
            print(f"{r['path']}: {r['class']}   ({shown})")
    if explain:
        save_explanations(explain, files, batch, heatmaps, results)
        if not as_json:
            print(f"wrote {explain}")
    return results


def unnormalize(batch: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised N x 3 x H x W -> 0..1 pixels, for display."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch.float().cpu() * std + mean).clamp(0, 1)


def save_explanations(out: Path, files: list[Path], batch: torch.Tensor, heatmaps: torch.Tensor,
                      results: list[dict]) -> None:
    """One row per image: the preprocessed image and its Grad-CAM overlay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = unnormalize(batch)
    fig, axes = plt.subplots(len(files), 2, figsize=(6, 3 * len(files)), squeeze=False)
    for row, (path, image, heat, r) in enumerate(zip(files, shown, heatmaps, results)):
        axes[row, 0].imshow(image.permute(1, 2, 0).numpy())
        axes[row, 0].set_title(Path(path).name, fontsize=8)
        axes[row, 1].imshow(overlay(image, heat).numpy())
        axes[row, 1].set_title(f"Grad-CAM: {r['class']} {100 * r['probabilities'][r['class']]:.0f}%", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
