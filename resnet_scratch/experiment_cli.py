"""The command line every experiment script shares (--scale, --seeds, --runs-dir, --data, ...), the
settings it gives, and the folder a page is written to (which never loses seeds a page records)."""

import argparse
from pathlib import Path

from .config import Config, load_config
from .data import default_external_root
from .experiment import Arm, recorded_arms, recorded_seeds, run_arms, settings_differences

# The recipe every experiment shares at each scale (from scratch: SGD + nesterov, one-cycle, label
# smoothing, a floor on the crop's share of the slice); an experiment overrides only what it studies.
RECIPES: dict[str, dict[str, object]] = {
    # A smoke test on generated images: it must run, not learn.
    "tiny": {"image_size": 32, "epochs": 1, "batch_size": 4, "lr": 0.01, "val_fraction": 0.2},
    # The 2-core CPU: 64 px (InceptionV3: its 75 px minimum) and bf16 autocast; each experiment's
    # page gives the time its runs' epochs took.
    "cpu": {
        "image_size": 64,
        "epochs": 4,
        "batch_size": 64,
        "schedule": "onecycle",
        "lr": 0.05,
        "weight_decay": 5e-4,
        "nesterov": True,
        "label_smoothing": 0.1,
        "crop_scale_min": 0.35,
    },
    # Full resolution (the model's own: 224, InceptionV3 299 with its auxiliary loss), at a batch that
    # keeps an H100 busy; epochs estimated (not measured) to fit an experiment in one device command.
    "gpu": {
        "image_size": None,
        "epochs": 8,
        "checkpoint_every": 4,  # a VGG16 checkpoint and state are 2.7 GB: not every epoch
        "batch_size": 128,
        "schedule": "onecycle",
        "lr": 0.1,
        "weight_decay": 5e-4,
        "nesterov": True,
        "label_smoothing": 0.1,
        "crop_scale_min": 0.25,
    },
}
SCALES = tuple(RECIPES)


def experiment_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every experiment script shares."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="cpu",
        help="cpu: this 2-core machine in under an hour; gpu: full resolution; tiny: a smoke test",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    p.add_argument("--data", type=Path, help="dataset root (default: the training default, $RESNET_SCRATCH_DATA)")
    p.add_argument(
        "--out", type=Path, help="results folder (default docs/results/<experiment>, or <experiment>-<scale> off cpu)"
    )
    p.add_argument("--runs-dir", type=Path, default=Path("runs/experiments"), help="where the runs' checkpoints go")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="decoded-image cache shared by the runs")
    p.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda[:N]"')
    p.add_argument("--epochs", type=int, help="override the scale preset's epochs")
    p.add_argument("--image-size", type=int, help="override the scale preset's input size (px)")
    p.add_argument(
        "--summarize-only",
        action="store_true",
        help="train nothing: write the results of the runs that finished (after a run out of time)",
    )
    p.add_argument(
        "--arms",
        type=lambda text: [label.strip() for label in text.split(",") if label.strip()],
        help="train only these arms (labels, comma-separated); the others are summarised from their runs or records",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="one epoch per run: to check a preset's command end to end on generated data (SMOKE=1 of the GPU "
        "scripts) before any GPU time is spent",
    )
    p.add_argument(
        "--external",
        default=str(default_external_root() or "none"),
        help="other collections each run is scored on after Testing ('none' to skip); default: %(default)s",
    )
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    return args


def base_config(args: argparse.Namespace, overrides: dict[str, object]) -> Config:
    """The scale preset's settings plus the command line's data, cache, device, external sets, and
    its --epochs and --image-size where given."""
    extra: dict[str, object] = {"device": args.device, "cache_dir": str(args.cache_dir), "external": args.external}
    for key in ("data", "epochs", "image_size"):
        if getattr(args, key) is not None:
            extra[key] = str(getattr(args, key)) if key == "data" else getattr(args, key)
    if args.smoke:
        extra["epochs"] = 1
    return load_config(None, overrides | extra)


def committed_folder(name: str, scale: str) -> Path:
    """docs/results/<name> for the CPU preset (the committed results), <name>-<scale> otherwise."""
    return Path("docs/results") / (name if scale == "cpu" else f"{name}-{scale}")


def results_folder(name: str, args: argparse.Namespace) -> Path:
    """--out where given, else committed_folder(name, args.scale)."""
    return args.out if args.out is not None else committed_folder(name, args.scale)


def run_experiment(
    name: str, args: argparse.Namespace, arms: list[Arm], borrow: tuple[str, ...] = ()
) -> list[dict[str, object]]:
    """run_arms over seeds 0 .. args.seeds - 1 (training nothing with --summarize-only), reusing the seeds
    that the experiment's committed results.json records where their runs are gone (another machine,
    a fresh checkout). The experiments named in `borrow` lend theirs too, to any arm of the same
    settings whatever its label; the experiment's own record comes first."""
    recorded = {}
    for other in borrow:
        recorded |= recorded_seeds(committed_folder(other, args.scale) / "results.json", arms, any_label=True)
    recorded |= recorded_seeds(results_folder(name, args) / "results.json", arms)
    return run_arms(
        arms, list(range(args.seeds)), args.runs_dir, train=not args.summarize_only, recorded=recorded, only=args.arms
    )


def recorded_richer(path: Path, summaries: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """The arms of the results.json at `path` (if any) that hold more finished runs than the summary of
    the same label and settings in `summaries`, by label."""
    old = recorded_arms(path)
    return {
        arm["label"]: was
        for arm in summaries
        if (was := old.get(arm["label"]))
        and was.get("finished", 0) > arm["finished"]
        and not settings_differences(was.get("settings", {}), arm["settings"])
    }


def output_dir(name: str, args: argparse.Namespace, summaries: list[dict[str, object]]) -> Path:
    """results_folder(name, args), created.

    Stops, writing nothing, where the folder's results.json holds more finished runs of an arm with the
    same settings than `summaries` has (its runs are in another runs_dir, or on another machine): a page
    regenerated with --summarize-only must never lose results. An arm whose settings changed may shrink.
    """
    out = results_folder(name, args)
    path = out / "results.json"
    new = {arm["label"]: arm for arm in summaries}
    fewer = [
        f"{label}: {new[label]['finished']} of {was['finished']}"
        for label, was in recorded_richer(path, summaries).items()
    ]
    if fewer:
        raise SystemExit(
            f"{path} holds more finished runs than {args.runs_dir} has ({'; '.join(fewer)}): not overwriting it. "
            "Point --runs-dir at the runs, ask for as many --seeds as it records, or write elsewhere with --out "
            "(any run trained now is kept in the runs_dir)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
