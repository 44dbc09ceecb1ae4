"""Command line: `python -m resnet_scratch <command>`; `--help` lists the commands."""

import argparse
import sys

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


def parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb."""
    p = argparse.ArgumentParser(prog="python -m resnet_scratch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="layer table of one model: shapes, parameters, multiply-adds")
    s.add_argument("model", choices=list(MODELS))
    s.add_argument("--size", type=int, default=None, help="input height = width (default: the model's)")
    s.add_argument("--num-classes", type=int, default=1000)
    s.set_defaults(func=cmd_summary)
    d = sub.add_parser("demo", help="layer tables of every model")
    d.add_argument("--num-classes", type=int, default=1000)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the command; user errors print one line and exit with code 2."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
