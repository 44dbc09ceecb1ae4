"""A run's folder: taken and locked at the start, config.json and metrics.jsonl written into it, and
the checks that let --resume continue it (same settings, same data).

Files of a run folder: config.json (the resolved settings, commit, environment, data sizes),
metrics.jsonl (one line per epoch), best.safetensors and last.safetensors (weights with metadata),
state-*.safetensors and state.json (the training state), metrics.json and report.md (the final test).
"""

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


def start_files(run: Path, config: Config, device: torch.device, data: RunData, start_epoch: int) -> None:
    """config.json, and metrics.jsonl without the lines of epochs to be (re)done."""
    metrics_path = run / "metrics.jsonl"
    lines = [e for e in read_epochs(run, drop_torn=True) if e["epoch"] < start_epoch] if metrics_path.is_file() else []
    atomic_write_text(metrics_path, "".join(json.dumps(e) + "\n" for e in lines))
    record = {"config": to_dict(config), "commit": git_commit(), "environment": environment(device)}
    atomic_write_text(run / "config.json", json.dumps(record | {"data": data_record(data)}, indent=1))


def append_epoch(run: Path, line: dict[str, object]) -> None:
    """metrics.jsonl with `line` as its last epoch (a line of the same or a later epoch is dropped)."""
    earlier = [e for e in read_epochs(run) if e["epoch"] < line["epoch"]]
    atomic_write_text(run / "metrics.jsonl", "".join(json.dumps(e) + "\n" for e in earlier + [line]))
