"""A run's folder: taken and locked at the start, config.json and the per-epoch logs written into it,
and the checks that let --resume continue it (same settings, same data).

Files of a run folder: config.json (the resolved settings, commit, environment, data sizes),
metrics.jsonl and metrics.csv (one line per epoch, epochs counted from 1), curves.png (redrawn after
every epoch), tensorboard/ (if asked), best.safetensors and last.safetensors (weights with metadata),
state-*.safetensors and state.json (the training state), metrics.json and report.md (the final test).
"""

import csv
import io
import json
from pathlib import Path

import torch

from .checkpoint import RunLock, committed_record, has_state, read_epochs, reconcile_best
from .config import Config, ConfigError, load_config, read_settings, to_dict
from .data.run import RunData
from .files import atomic_write_text, remove_stale_temporaries
from .runtime import environment, git_commit

# Settings that --resume may change: where and how the run executes, and what it is scored on,
# never what it trains.
RESUMABLE_CHANGES = frozenset({"device", "cache_dir", "compile", "data", "external", "clean_list"})


def resume_config(run: Path, flags: dict[str, object], config_file: Path | None = None) -> Config:
    """The settings of the run in `run`, continued: a changed setting that decides what is trained
    is refused (a new lr or schedule is a new run), one of RESUMABLE_CHANGES is taken."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} has no config.json: it is not a run folder that can be resumed")
    try:
        saved = json.loads(path.read_text())["config"]
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
        raise ValueError(f"{path} is not a run's config.json") from None
    saved |= {"runs_dir": str(Path(run).parent), "name": Path(run).name}
    base = load_config(None, saved)
    asked = load_config(None, {**saved, **(read_settings(config_file) if config_file else {}), **flags})
    changed = [k for k, v in to_dict(asked).items() if v != getattr(base, k) and k not in RESUMABLE_CHANGES]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"--resume continues {run} with its own settings, and {k} = {getattr(asked, k)!r} differs from its "
            f"{getattr(base, k)!r}: to train with other settings start a new run (another --name), from this "
            f"run's weights if you like (--weights {Path(run) / 'last.safetensors'})"
        )
    return asked


def take_run_folder(run: Path, resume: bool) -> RunLock:
    """Check that `run` may be written (new, or resumed), create it and lock it."""
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"{run} exists and is not a folder: choose another --name")
    if run.exists() and not resume and any(p.name != ".lock" for p in run.iterdir()):
        raise FileExistsError(f"{run} already holds a run: resume it with --resume {run}, or choose another --name")
    run.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run)
    try:
        remove_stale_temporaries(run)
        if resume and has_state(run):  # under the lock: one process renames best files
            reconcile_best(run, committed_record(run))
    except BaseException:
        lock.release()
        raise
    return lock


def check_same_data(run: Path, data: RunData) -> None:
    """On resume: the data must split into the classes and sizes the run started with (if it got as far
    as recording them: a run killed before it wrote config.json starts again, in place)."""
    if not (run / "config.json").is_file():
        return
    try:
        recorded = json.loads((run / "config.json").read_text()).get("data", {})
    except (json.JSONDecodeError, AttributeError, RecursionError):
        raise ValueError(f"{run / 'config.json'} is not a run's config.json") from None
    now = data_record(data)
    for key in ("classes", "train", "val"):
        if key in recorded and recorded[key] != now[key]:
            raise ValueError(
                f"--resume {run}: the data now gives {key} = {now[key]}, the run started with "
                f"{recorded[key]}; a run continues on the data it started on"
            )


def data_record(data: RunData) -> dict[str, object]:
    """What config.json records of the data (extra: images a study added to training)."""
    return {
        "classes": data.train.classes,
        "train": len(data.train_rows),
        "val": len(data.val_rows),
        "extra": data.extra_count,
        "test": len(data.test),
        "leak_free_test": len(data.leak_free_rows),
    }


def start_files(run: Path, config: Config, device: torch.device, data: RunData, done: int) -> None:
    """config.json, and the per-epoch logs without the lines of epochs after `done` (to be redone)."""
    lines = read_epochs(run, drop_torn=True) if (run / "metrics.jsonl").is_file() else []
    write_epochs(run, [e for e in lines if e["epoch"] <= done])
    record = {"config": to_dict(config), "commit": git_commit(), "environment": environment(device)}
    atomic_write_text(run / "config.json", json.dumps(record | {"data": data_record(data)}, indent=1))


def append_epoch(run: Path, line: dict[str, object]) -> None:
    """The per-epoch logs with `line` as their last epoch (a line of the same or a later epoch is dropped)."""
    write_epochs(run, [e for e in read_epochs(run) if e["epoch"] < line["epoch"]] + [line])


def write_epochs(run: Path, lines: list[dict[str, object]]) -> None:
    """metrics.jsonl (one JSON record per epoch) and metrics.csv (the same table, for a spreadsheet)."""
    atomic_write_text(run / "metrics.jsonl", "".join(json.dumps(e) + "\n" for e in lines))
    columns = list(dict.fromkeys(key for line in lines for key in line))  # train_eval_* only if measured
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    try:
        atomic_write_text(run / "metrics.csv", table.getvalue())
    except PermissionError as e:  # open in a spreadsheet, which locks it on Windows: the run goes on
        print(f"{run / 'metrics.csv'} not updated ({e.strerror}); metrics.jsonl holds every epoch", flush=True)


class TensorBoard:
    """Each epoch's numbers as TensorBoard scalars in RUN/tensorboard, if the tensorboard package is
    installed; otherwise one line says so and the run goes on (metrics.csv holds the same numbers)."""

    def __init__(self, run: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print(
                "--tensorboard: the tensorboard package is not installed (pip install tensorboard); "
                f"the numbers are in {run / 'metrics.csv'}",
                flush=True,
            )
            self.writer = None
        else:
            self.writer = SummaryWriter(str(run / "tensorboard"))

    def add(self, line: dict[str, object]) -> None:
        """One epoch's numbers, at step = its epoch (from 1)."""
        if self.writer is None:
            return
        for key, value in line.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, global_step=line["epoch"])  # the names of metrics.csv
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
