"""Writing files so that a crash never leaves half of one: a temporary name, then a rename.

A kill (even SIGKILL) leaves the previous file or the new one; a write that fails with an
exception removes its temporary file. The temporary is fsynced before the rename and the folder
after it, so after a power cut the name points at a whole file (the old one or the new one).
The temporary a killed process leaves behind is removed by remove_stale_temporaries, which each
folder's next writer calls (run folders, the decode cache, conversion and evaluation outputs). It
removes only names this module makes (TEMPORARY), never another program's files.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path

# The process's umask, read once (os.umask can only be read by setting it).
UMASK = os.umask(0o022)
os.umask(UMASK)
# .<name>.<pid>.resnet_scratch.tmp: the only files remove_stale_temporaries may delete.
TEMPORARY = re.compile(r"^\..+\.(\d+)\.resnet_scratch\.tmp$")


def temporary_name(path: Path) -> Path:
    """The temporary that atomic_write writes before renaming it onto `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}.resnet_scratch.tmp")


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temporary path), fsync it, rename it onto `path` and fsync the folder; on any failure
    the temporary goes."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # as open() makes files: some writers (safetensors) make them 600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries (TEMPORARY) that writers which no longer run left in `folder`: the pid in
    a temporary's name says whose it is. Any other file, whatever its name, is left alone."""
    stale = []
    for p in Path(folder).glob(".*.resnet_scratch.tmp"):
        match = TEMPORARY.match(p.name)
        if match and p.is_file() and not p.is_symlink() and not alive(int(match.group(1))):
            p.unlink(missing_ok=True)
            stale.append(p)
    return stale


def alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) there would send CTRL_C_EVENT, not ask
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if handle:
            ctypes.windll.kernel32.CloseHandle(handle)
        return bool(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
