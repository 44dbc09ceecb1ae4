"""Export a trained model so that it runs without this package: torch.export (.pt2) or TorchScript (.pt).

The file holds the network only. Its input is what the Predictor feeds it: float32 N x 3 x size x size,
resized, centre-cropped and normalised as the checkpoint records: with its mean and std, or per image
(`normalize`), in grey or not. A JSON file beside it records those, with the class names, so that a
user elsewhere can prepare images the same way.
"""

import json
import warnings
from pathlib import Path

import torch

from .files import atomic_write, atomic_write_text
from .predictor import Predictor

FORMATS = {"torch-export": ".pt2", "torchscript": ".pt"}


def export_checkpoint(checkpoint: Path, fmt: str, out: Path | None = None) -> Path:
    """Write the checkpoint's model in `fmt` (FORMATS) to `out` (default: beside the checkpoint), and
    out.json with its classes and preprocessing; returns the model file."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    predictor = Predictor.load(checkpoint, "cpu", bf16=False, channels_last=False)  # float32, plain layout
    model, size = predictor.model.eval(), predictor.prep.size
    out = Path(out) if out else Path(checkpoint).with_suffix(FORMATS[fmt])
    example = torch.zeros(2, 3, size, size)
    if fmt == "torch-export":
        batch = torch.export.Dim("batch", max=4096)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        atomic_write(out, lambda tmp: torch.export.save(program, str(tmp)))
    else:
        with warnings.catch_warnings():  # the input checks become constants: right for this input size
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example)
        atomic_write(out, lambda tmp: traced.save(str(tmp)))
    meta = predictor.meta
    about = {"format": fmt, "classes": predictor.classes, "input_size": size, "mean": meta["mean"], "std": meta["std"]}
    about |= {"head_crop": bool(meta["head_crop"]), "resize_before_crop": predictor.prep.store_side}
    about |= {"normalize": predictor.prep.normalize, "grey": predictor.prep.grey, "tta_flip": predictor.prep.tta_flip}
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(about, indent=1))
    return out
