"""Convert torchvision weights to ours (.pth -> .safetensors with metadata), or back.

python -m weights_convert --arch resnet50 --src resnet50-0676ba61.pth --dst resnet50.safetensors
python -m weights_convert --arch resnet50 --src runs/x/best.safetensors --dst r50.pth --to-torchvision
"""

import argparse
import sys
from pathlib import Path

import torch

from resnet_scratch.checkpoint import expect_arch
from resnet_scratch.cli import OneLineParser, one_line
from resnet_scratch.files import atomic_write
from resnet_scratch.models import MODEL_INFO
from resnet_scratch.pretrained import check_same_function

from .convert import ConversionError, from_torchvision, to_torchvision
from .files import load_pth, load_safetensors, save_safetensors, sha256
from .tables import TABLES


def convert_file(arch: str, src: Path, dst: Path) -> dict[str, object]:
    """torchvision .pth -> our .safetensors with metadata; returns the metadata written."""
    state, digest = load_pth(src)
    ours = from_torchvision(state, arch)
    info = MODEL_INFO[arch]
    metadata: dict[str, object] = {
        "format": "resnet_scratch.weights/1",
        "arch": arch,
        "num_classes": ours[info.heads[0] + ".weight"].shape[0],
        "source_file": src.name,
        "source_sha256": digest,
        "input_size": info.input_size,
        "mean": list(info.mean),
        "std": list(info.std),
    }
    if arch == "inception_v3":
        # torchvision's Inception weights were trained on [-1, 1] pixels: they need transform_input.
        metadata["transform_input"] = True
        metadata["aux_logits"] = any(k.startswith("AuxLogits.") for k in ours)
    save_safetensors(ours, dst, metadata)
    return metadata


def export_file(arch: str, src: Path, dst: Path) -> None:
    """Our .safetensors (a run's checkpoint or a converted file) -> a torchvision .pth (a plain state
    dict, loadable with weights_only=True)."""
    ours, metadata = load_safetensors(src)
    try:
        expect_arch(src, metadata, arch)
        # torchvision builds only its own layout: v1, shortcut A or C, or no shortcuts would load and be wrong
        check_same_function(arch, {}, metadata.get("options") or {}, str(src))
    except ValueError as e:
        raise ConversionError(f"{e}; torchvision cannot represent it") from None
    theirs = to_torchvision(ours, arch)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dst, lambda tmp: torch.save(theirs, tmp))


def check_paths(src: Path, dst: Path) -> None:
    """Refuse a destination that is a folder or the source itself, before anything is written."""
    if dst.is_dir():
        raise ConversionError(f"--dst {dst} is a folder; give the file to write, e.g. {dst / (src.stem + '.out')}")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ConversionError(f"--dst {dst} is the source file: write the converted weights elsewhere")


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; a user error prints one line and returns 2."""
    p = OneLineParser(
        prog="weights-convert" if Path(sys.argv[0]).name == "weights-convert" else "python -m weights_convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", required=True, choices=list(TABLES))
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--dst", required=True, type=Path)
    p.add_argument("--to-torchvision", action="store_true", help="ours (.safetensors) -> torchvision (.pth)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), as a return code
        return int(e.code or 0)
    try:
        check_paths(args.src, args.dst)
        if args.to_torchvision:
            export_file(args.arch, args.src, args.dst)
            print(f"wrote {args.dst} (torchvision {args.arch}, SHA-256 {sha256(args.dst)[:16]}...)")
        else:
            meta = convert_file(args.arch, args.src, args.dst)
            print(
                f"wrote {args.dst}: {args.arch}, {meta['num_classes']} classes, "
                f"from {meta['source_file']} (SHA-256 {str(meta['source_sha256'])[:16]}...)"
            )
    except (ConversionError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
