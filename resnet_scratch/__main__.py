"""Command line: `python -m resnet_scratch <command>`; `--help` lists the commands."""

import argparse
import json
import logging
import sys
from pathlib import Path

from .models import MODELS
from .summary import summarize


def cmd_summary(args: argparse.Namespace) -> int:
    """Print the layer table of one model."""
    print(summarize(args.model, args.size, args.num_classes))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Print the layer table of every model in the zoo."""
    for name in MODELS:
        print(summarize(name, None, args.num_classes))
        print()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit a dataset folder: counts, duplicates, leakage, label conflicts."""
    from .data.audit import audit, format_report

    report = audit(args.root, args.threshold, args.cache)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    if args.write_clean_list:
        args.write_clean_list.parent.mkdir(parents=True, exist_ok=True)
        args.write_clean_list.write_text("".join(p + "\n" for p in report["leak_free_test"]))
        print(f"wrote {args.write_clean_list} ({report['leak_free_test_count']} Testing files)")
    return 0


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    """Train per defaults < --config TOML < --key value flags; or continue a run with --resume."""
    from .config import load_config, parse_flags
    from .train import fit

    flags = parse_flags(rest)
    if args.resume:
        saved = json.loads((args.resume / "config.json").read_text())["config"]
        flags = {**saved, **flags, "runs_dir": str(args.resume.parent), "name": args.resume.name}
    config = load_config(args.config, flags)
    fit(config, resume=args.resume is not None)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a dataset's Testing split (and its leak-free subset); write a report."""
    from .evaluate import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, args.data, args.out, args.clean_list)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify images with a checkpoint; --explain saves Grad-CAM overlays."""
    from .predict import predict_files

    predict_files(args.checkpoint, args.images, args.json, args.explain)
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb."""
    p = argparse.ArgumentParser(prog="python -m resnet_scratch", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="layer table of one model: shapes, parameters, multiply-adds")
    s.add_argument("model", choices=list(MODELS))
    s.add_argument("--size", type=int, default=None, help="input height = width (default: the model's)")
    s.add_argument("--num-classes", type=int, default=1000)
    s.set_defaults(func=cmd_summary)
    d = sub.add_parser("demo", help="layer tables of every model")
    d.add_argument("--num-classes", type=int, default=1000)
    d.set_defaults(func=cmd_demo)

    from .data import default_root
    from .data.audit import HAMMING_THRESHOLD

    a = sub.add_parser("audit", help="dataset audit: counts, duplicates, Testing/Training leakage")
    a.add_argument("root", type=Path, nargs="?", default=default_root(), help="default: %(default)s")
    a.add_argument("--json", type=Path, help="write the full report here")
    a.add_argument("--write-clean-list", type=Path, help="write the leak-free Testing files here, one per line")
    a.add_argument("--threshold", type=int, default=HAMMING_THRESHOLD, help="pHash bits for a near duplicate")
    a.add_argument("--cache", type=Path, help="keep decoded images in this folder between runs")
    a.set_defaults(func=cmd_audit)

    t = sub.add_parser("train", help="train a model; any setting of resnet_scratch/config.py as --key value",
                       description="Settings: defaults < --config file.toml < --key value flags (e.g. --model resnet18 "
                                   "--image-size 128 --epochs 8 --lr 0.01). See resnet_scratch/config.py for every key.")
    t.add_argument("--config", type=Path, help="a TOML file of settings")
    t.add_argument("--resume", type=Path, help="a run folder to continue where it stopped")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset's Testing split")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--data", type=Path, default=default_root(), help="default: %(default)s")
    e.add_argument("--clean-list", type=Path, help="leak-free Testing files (default: computed as the audit does)")
    e.add_argument("--out", type=Path, help="folder for report.md, metrics.json and plots (default: beside the checkpoint)")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="classify image files (or folders of them) with a checkpoint")
    r.add_argument("--checkpoint", type=Path, required=True)
    r.add_argument("images", type=Path, nargs="+")
    r.add_argument("--json", action="store_true", help="print JSON for machines")
    r.add_argument("--explain", type=Path, help="save the images with their Grad-CAM heatmaps to this PNG")
    r.set_defaults(func=cmd_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the command; user errors print one line and exit with code 2."""
    args, rest = parser().parse_known_args(argv)
    if rest and args.command != "train":
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .train import TrainingDiverged

    try:
        return args.func(args, rest) if args.command == "train" else args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, TrainingDiverged) as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
