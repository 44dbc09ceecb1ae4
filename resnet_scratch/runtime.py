"""Where a run executes and what it records about that: the device, torchrun's process group, bf16
support, the git commit and versions, and the live progress line."""

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.distributed as dist

from .version import __version__


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when present, else CPU; otherwise the named device, which must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f'device {name!r} is not a device name: "auto", "cpu", "cuda" or "cuda:N"') from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f'device {name!r}: only "auto", "cpu", "cuda" and "cuda:N" are supported')
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only the main process prints and writes files."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) if WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    process = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return process


def all_ranks_agree(ok: bool, device: torch.device, process: Distributed) -> bool:
    """Whether `ok` holds on every process (one all-reduce under torchrun; `ok` itself otherwise)."""
    if process.world_size == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast here: CUDA with bf16, or a CPU with avx512_bf16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def git_commit() -> str:
    """The checkout's commit, with "-dirty" if it has uncommitted changes; outside git,
    $RESNET_SCRATCH_COMMIT (a copy of the tree sent to another machine says where it came from), else
    "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        if Path(top).resolve() != here.parent:  # an installed copy inside another project's repository
            raise subprocess.CalledProcessError(1, "git")
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("RESNET_SCRATCH_COMMIT", "unknown")
    return commit + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, str]:
    """Versions and the device, for config.json."""
    import numpy
    import PIL

    env = {
        "resnet_scratch": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "device": str(device),
        "threads": str(torch.get_num_threads()),
        "processor": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class Progress:
    """One live line per epoch: batches, loss, accuracy, images/s, ETA. In a plain log (not a
    terminal) it prints a line at every tenth of the epoch instead of redrawing."""

    def __init__(self, epoch: int, epochs: int, batches: int, stream: TextIO | None = None) -> None:
        """Epoch `epoch` (from 1) of `epochs`, in `batches` batches."""
        self.epoch, self.epochs, self.batches = epoch, epochs, batches
        self.stream = stream if stream is not None else sys.stdout  # the stream of the moment, not of import
        self.live = self.stream.isatty()
        self.start = time.perf_counter()
        self.next_report = 0

    def update(self, done: int, loss: float, accuracy: float, images: int) -> None:
        """Report after `done` batches."""
        if not self.live and done < self.next_report and done != self.batches:
            return
        self.next_report = done + max(1, self.batches // 10)
        elapsed = time.perf_counter() - self.start
        per_batch = elapsed / max(done, 1)
        eta = per_batch * (self.batches - done) + per_batch * self.batches * (self.epochs - self.epoch)
        line = (
            f"epoch {self.epoch}/{self.epochs} [{done}/{self.batches}] loss {loss:.4f} "
            f"acc {accuracy:.4f} {images / max(elapsed, 1e-9):.0f} img/s ETA {eta / 60:.1f} min"
        )
        print(
            ("\r" + line) if self.live else line,
            end="" if self.live and done < self.batches else "\n",
            file=self.stream,
            flush=True,
        )


class RunningStats:
    """An epoch's running loss and accuracy, summed on the device and read (one synchronisation) only
    when asked; the first non-finite loss is remembered with its batch number."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # batch of the first non-finite loss
        self.bad_loss = torch.zeros((), device=device)
        self.seen = 0

    def add(self, step: int, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        """Batch `step`'s mean loss, its number of right predictions and its size (nothing is read back)."""
        newly_bad = (self.first_bad < 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(newly_bad, step, self.first_bad)
        self.bad_loss = torch.where(newly_bad, loss.float(), self.bad_loss)
        self.loss_sum += loss.double() * count
        self.correct += correct
        self.seen += count

    def read(self) -> tuple[float, float]:
        """(mean loss, accuracy) so far; raises TrainingDiverged if a loss was not finite."""
        total, right, bad = torch.stack([self.loss_sum, self.correct.double(), self.first_bad.double()]).tolist()
        if bad >= 0:
            raise TrainingDiverged(f"the loss became {self.bad_loss.item()} at batch {int(bad)} of this epoch")
        return total / self.seen, right / self.seen

    def totals(self) -> tuple[float, float, float]:
        """(mean loss, accuracy, images) over every process of a torchrun job."""
        seen = torch.tensor(float(self.seen), dtype=torch.float64, device=self.loss_sum.device)
        totals = torch.stack([self.loss_sum, self.correct.double(), seen])
        if dist.is_initialized():  # every rank's share of the epoch
            dist.all_reduce(totals)
        loss, right, images = totals.tolist()
        return loss / max(images, 1), right / max(images, 1), images
