"""Writing files so that a crash never leaves half of one: a temporary name, then a rename.

A kill (even SIGKILL) leaves the previous file or the new one; a write that fails with an
exception removes its temporary file; the temporary a killed process leaves behind is removed by
remove_stale_temporaries, which each folder's next writer calls (run folders, the decode cache,
conversion and evaluation outputs). Nothing is fsynced: a power cut is another matter.
"""

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temporary path), then rename it onto `path`; on any failure the temporary goes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writers which no longer run left in `folder` (the pid in a
    temporary's name says whose it is)."""
    stale = []
    for p in Path(folder).glob(".*.tmp"):
        pid = p.name.rsplit(".", 2)[-2]
        if p.is_file() and not (pid.isdigit() and alive(int(pid))):
            p.unlink(missing_ok=True)
            stale.append(p)
    return stale


def alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
