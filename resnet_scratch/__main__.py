"""Command line: `resnet-scratch <command>` (or `python -m resnet_scratch <command>`).
`--help` lists the commands, `train --help` every setting.

A user error (a bad flag or value, a missing or foreign file, a folder that cannot be written)
prints one line starting with "error:" and exits with code 2.
"""

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .cli import OneLineParser, one_line, reader_gone, silence
from .data import dataset_root, default_external_root, default_root
from .data.audit import HAMMING_THRESHOLD
from .models import MODELS
from .runtime import TrainingDiverged


def positive(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_summary(args: argparse.Namespace) -> int:
    """Print the layer table of one model."""
    from .summary import summarize

    print(summarize(args.model, args.size, args.num_classes))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Print the layer table of every model in the zoo."""
    from .summary import summarize

    for name in MODELS:
        print(summarize(name, None, args.num_classes))
        print()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit a dataset folder: counts, duplicates, leakage, label conflicts; overlap with other
    collections (--against); the shortcut probe (--probe)."""
    from .data.audit import audit, audit_against, format_against, format_report
    from .data.folder import GET_DATASET, DatasetError
    from .data.run import write_clean_list
    from .files import atomic_write_text

    if args.root is None:
        raise DatasetError(f"no dataset: give its folder (audit FOLDER) or set $RESNET_SCRATCH_DATA; {GET_DATASET}")
    if args.against:
        report = audit_against(args.root, args.against, args.threshold, args.cache)
        print(format_against(report))
        clean = [p for r in report["against"].values() for p in r["clean"]]
    else:
        report = audit(args.root, args.threshold, args.cache)
        print(format_report(report))
        clean = report["leak_free_test"]
        if args.probe:
            from .data import load_split
            from .data.probe import shortcut_probe

            train = load_split(args.root, "Training", cache_dir=args.cache)
            test = load_split(args.root, "Testing", classes=train.classes, cache_dir=args.cache)
            report["probe"] = shortcut_probe(train, test)
            print(format_probe(report["probe"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    if args.write_clean_list:
        write_clean_list(args.write_clean_list, clean)
        print(f"wrote {args.write_clean_list} ({len(clean)} files)")
    return 0


def format_probe(probe: dict) -> str:
    """The shortcut probe's figures as lines."""
    cv = ", ".join(f"{c} {100 * v:.1f}%" for c, v in probe["cv_recall"].items())
    lines = [
        f"  shortcut probe ({probe['features']}, linear): {100 * probe['cv_accuracy']:.1f}% "
        f"{probe['folds']}-fold on Training (chance {100 * probe['chance']:.1f}%); recall {cv}"
    ]
    if "test_accuracy" in probe:
        test = ", ".join(f"{c} {100 * v:.1f}%" for c, v in probe["test_recall"].items())
        lines.append(f"    fitted on Training, on Testing: {100 * probe['test_accuracy']:.1f}%; recall {test}")
    return "\n".join(lines)


def auto_or_bool(text: str) -> bool | None:
    """An auto|true|false flag (argparse type): None for auto, which lets the device or checkpoint decide."""
    value = {"auto": None, "true": True, "false": False}.get(text.lower(), "?")
    if value == "?":
        raise argparse.ArgumentTypeError(f'expected "auto", "true" or "false", got {text!r}')
    return value


def cmd_train(args: argparse.Namespace) -> int:
    """Train per defaults < --config TOML < --key value flags; or continue a run with --resume."""
    from .config import flags_given, load_config
    from .run_folder import resume_config
    from .studies.brain_mri import BrainMRI
    from .train import fit

    flags = flags_given(args)
    if args.resume:
        config = resume_config(args.resume, flags, args.config)
    else:
        config = load_config(args.config, flags)
        taken = Path(config.runs_dir) / config.name
        plain = "name" not in flags and config.name == "run" and "WORLD_SIZE" not in os.environ  # torchrun: one name
        if plain and taken.is_dir() and any(p.name != ".lock" for p in taken.iterdir()):
            config = replace(config, name=f"run-{time.strftime('%Y%m%d-%H%M%S')}")  # a plain second train
            print(
                f"{taken} already holds a run: this one is {config.name} (--resume {taken} continues that one; "
                "--name NAME chooses a name)",
                flush=True,
            )
    fit(config, resume=args.resume is not None, study=BrainMRI(), tensorboard=args.tensorboard)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a dataset's Testing split or on labelled folders; write a report."""
    from .evaluate import evaluate_checkpoint
    from .studies.brain_mri import BrainMRI

    evaluate_checkpoint(
        args.checkpoint,
        args.data or [default_root()],
        BrainMRI(),
        args.out,
        args.clean_list,
        args.class_map,
        args.device,
        args.bf16,
        args.tta_flip,
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify images with a checkpoint; --explain saves Grad-CAM overlays. Exit 2 if an image could not
    be read (a folder's files that are not images by name are listed, and do not count)."""
    from .predict import predict_files

    results = predict_files(
        args.checkpoint, args.images, args.json, args.explain, args.batch_size, args.device, args.bf16
    )
    return 2 if any("error" in r for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a checkpoint's model as a file that loads without this package."""
    from .export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.format, args.out)
    print(f"wrote {out} and {out.name}.json (classes and preprocessing)")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb."""

    prog = "resnet-scratch" if Path(sys.argv[0]).name == "resnet-scratch" else "python -m resnet_scratch"
    p = OneLineParser(prog=prog, description=__doc__, allow_abbrev=False)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    s = sub.add_parser("summary", help="layer table of one model: shapes, parameters, multiply-adds")
    s.add_argument("model", choices=list(MODELS))
    s.add_argument("--size", type=int, default=None, help="input height = width (default: the model's)")
    s.add_argument("--num-classes", type=int, default=1000)
    s.set_defaults(func=cmd_summary)
    d = sub.add_parser("demo", help="layer tables of every model")
    d.add_argument("--num-classes", type=int, default=1000)
    d.set_defaults(func=cmd_demo)

    add_audit(sub)
    add_train(sub)
    add_evaluate(sub)
    add_predict(sub)
    x = sub.add_parser("export", help="write a checkpoint's model for use without this package")
    x.add_argument("checkpoint", type=Path, help="a run's best.safetensors (or last.safetensors)")
    x.add_argument("--format", required=True, choices=["torch-export", "torchscript"], help="the file's kind")
    x.add_argument("--out", type=Path, help="the file to write (default: beside the checkpoint, .pt2 or .pt)")
    x.set_defaults(func=cmd_export)
    return p


def add_audit(sub: argparse._SubParsersAction) -> None:
    """The audit verb's arguments."""
    a = sub.add_parser(
        "audit",
        help="dataset audit: counts, duplicates, Testing/Training leakage, overlap with "
        "other collections, the shortcut probe",
    )
    a.add_argument(
        "root",
        type=Path,
        nargs="?",
        default=dataset_root(),
        help=f"default: {dataset_root() or 'none ($RESNET_SCRATCH_DATA)'}",
    )
    a.add_argument(
        "--against",
        type=Path,
        nargs="+",
        metavar="FOLDER",
        help="folders of class folders from other collections: their images that duplicate root's",
    )
    a.add_argument(
        "--probe",
        action="store_true",
        help="the shortcut probe: a linear model on 8x8 thumbnails and intensity histograms (docs/data.md)",
    )
    a.add_argument("--json", type=Path, help="write the full report here")
    a.add_argument(
        "--write-clean-list",
        type=Path,
        help="write the clean files here, one per line: leak-free Testing, or with --against the "
        "other folders' images that duplicate nothing in root",
    )
    a.add_argument("--threshold", type=int, default=HAMMING_THRESHOLD, help="pHash bits for a near duplicate")
    a.add_argument("--cache", type=Path, help="keep decoded images in this folder between runs")
    a.set_defaults(func=cmd_audit)


def add_train(sub: argparse._SubParsersAction) -> None:
    """The train verb: --config, --resume and one flag per setting."""
    from .config import add_setting_flags

    t = sub.add_parser(
        "train",
        help="train a model (every setting is a flag: train --help)",
        allow_abbrev=False,
        description="Settings: defaults < --config file.toml < --key value flags. With --resume, a "
        "run continues with its own settings.",
    )
    t.add_argument(
        "--config",
        type=Path,
        help="a TOML file of settings, a packaged recipe by name (main_cpu), or a run's config.json to repeat it",
    )
    t.add_argument("--resume", type=Path, metavar="RUN", help="a run folder to continue where it stopped")
    t.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log each epoch for TensorBoard, in RUN/tensorboard (needs: pip install tensorboard); "
        "metrics.csv and curves.png are written either way",
    )
    add_setting_flags(t)
    t.set_defaults(func=cmd_train)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """The evaluate verb's arguments."""
    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset's Testing split or on labelled folders")
    e.add_argument("--checkpoint", type=Path, required=True, help="a run's best.safetensors (or last.safetensors)")
    e.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=None,
        help="dataset roots (their Testing/ is scored, full and leak-free) or folders of class folders; "
        f"default: {dataset_root() or 'none: give --data or set $RESNET_SCRATCH_DATA'}; e.g. "
        f"{default_external_root() or '../shared/data/external'}/sartaj",
    )
    e.add_argument(
        "--class-map",
        help="rename class folders: old=new,... (new: a checkpoint class, or tumour for any tumour class)",
    )
    e.add_argument(
        "--clean-list",
        type=Path,
        help="score only the files listed (audit --write-clean-list), paths relative to each scored folder's parent",
    )
    e.add_argument(
        "--out", type=Path, help="folder for report.md, metrics.json and plots (default: beside the checkpoint)"
    )
    e.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu" or "cuda[:N]"')
    e.add_argument(
        "--bf16",
        type=auto_or_bool,
        default=None,
        metavar="auto|true|false",
        help="autocast to bfloat16; auto (the default): where the device supports it, as training does",
    )
    e.add_argument(
        "--tta-flip",
        type=auto_or_bool,
        default=None,
        metavar="auto|true|false",
        help="average each image's logits with those of its left-right mirror image (twice the cost); "
        "auto (the default): as the checkpoint's tta_flip setting records",
    )
    e.set_defaults(func=cmd_evaluate)


def add_predict(sub: argparse._SubParsersAction) -> None:
    """The predict verb's arguments."""
    r = sub.add_parser("predict", help="classify image files (or folders of them) with a checkpoint")
    r.add_argument("--checkpoint", type=Path, required=True, help="a run's best.safetensors (or last.safetensors)")
    r.add_argument("images", type=Path, nargs="+", help="image files, or folders of them")
    r.add_argument("--json", action="store_true", help="one JSON object per image and line, as each is done")
    r.add_argument(
        "--explain",
        type=Path,
        help="a .png: Grad-CAM of the first images in one grid; a folder: one Grad-CAM image per file",
    )
    r.add_argument(
        "--batch-size",
        type=positive,
        default=32,
        help="images per batch (memory: one batch's images, and a line of results per image)",
    )
    r.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu" or "cuda[:N]"')
    r.add_argument(
        "--bf16",
        type=auto_or_bool,
        default=None,
        metavar="auto|true|false",
        help="autocast to bfloat16; auto (the default): where the device supports it, as training does",
    )
    r.set_defaults(func=cmd_predict)


def flag_spelling(arg: str) -> str:
    """--batch_size -> --batch-size (and --batch_size=8 -> --batch-size=8); anything else unchanged."""
    if not arg.startswith("--"):
        return arg
    key, sep, value = arg.partition("=")
    return key.replace("_", "-") + sep + value


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the command; user errors print one line and exit with code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "train" in argv:  # a setting keeps its TOML spelling as a flag too: --batch_size as --batch-size
        at = argv.index("train") + 1
        argv[at:] = [flag_spelling(a) for a in argv[at:]]
    p = parser()
    try:
        args, rest = p.parse_known_args(argv)
        if rest and args.command == "train":
            from .config import Config

            known = ", ".join(f"--{f.replace('_', '-')}" for f in Config.__dataclass_fields__)
            p.error(f"unknown setting {rest[0].lstrip('-').split('=')[0].replace('-', '_')!r}; known: {known}")
        if rest:
            p.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as e:  # --help (0) or a usage error (2), as a return code
        return int(e.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except OSError as e:
        if not reader_gone(e):
            return user_error(e, args.debug)
        silence()  # `demo | head`: the reader has what it wanted
        return 0
    except (ValueError, TrainingDiverged) as e:
        return user_error(e, args.debug)


def user_error(e: Exception, debug: bool) -> int:
    """Print a user error as one line (or raise it, with --debug); the exit code 2."""
    if debug:
        raise e
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
