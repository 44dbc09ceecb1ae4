"""What the two command lines (`python -m resnet_scratch`, `python -m weights_convert`) share: usage
errors and user errors as one line starting with "error:", exit code 2."""

import argparse
import errno
import os
import sys
from typing import TextIO


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), like every other error here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print "error: ..." with where to find help, and exit with 2."""
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def reader_gone(error: OSError) -> bool:
    """Whether a write failed because the reader of our output went away (`... | head`): a broken pipe,
    which Windows reports as EINVAL."""
    return isinstance(error, BrokenPipeError) or (os.name == "nt" and error.errno == errno.EINVAL)


def silence(stream: TextIO | None = None) -> None:
    """Send what is still to be printed to `stream` (stdout by default) nowhere: its reader has gone,
    and the exit's flush must not fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), (stream or sys.stdout).fileno())


def one_line(error: BaseException) -> str:
    """An error's message on one line: an OSError as "reason: file", any other as its lines joined."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    text = ""
    for line in (line.strip() for line in str(error).splitlines() if line.strip()):
        text += (" " if text.endswith(":") else "; " if text else "") + line
    return text or type(error).__name__
