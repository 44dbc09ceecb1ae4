"""Checkpoints without pickle: weights and tensors in safetensors, everything else in JSON.

Every file is written to a temporary name and renamed into place, so a process killed at any point
(even by SIGKILL) leaves either the previous file or the new one, never half of one; the file and
its folder are fsynced around the rename (files.atomic_write), and the state before the newest is
kept for a power cut that damages the newest anyway. A write that fails removes its temporary
file. A run folder is locked while a process writes it.

The training state commits an epoch: state-<epoch>.safetensors, then state.json naming it. A new
best model is written beside it first (best.pending.safetensors) and renamed to best.safetensors
only after state.json has committed its epoch, so best.safetensors never holds an epoch that a
resume would train again; reconcile_best finishes or discards a rename a kill interrupted.
"""

import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .files import alive, atomic_write, atomic_write_bytes, atomic_write_text

try:
    import fcntl
except ImportError:  # Windows: RunLock falls back to the holder's pid (a best-effort lock)
    fcntl = None
from .data.transforms import NORMALIZATIONS
from .models import MODEL_INFO, build

FORMAT = "resnet_scratch.checkpoint/1"
PENDING_BEST = "best.pending.safetensors"
# The state record before the newest, kept until the next one commits: the fallback of a damaged state.
PREVIOUS_STATE = "state.previous.json"
# state.json's format: 2 counts epochs from 1, as metrics.jsonl, the console and the report do.
STATE_FORMAT = 2


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """safetensors file with string metadata, written atomically."""
    path = Path(path)
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        try:
            save_file(plain, str(tmp), metadata=metadata)
        except Exception as e:  # safetensors' own error type, e.g. on a full disk, becomes an OSError
            raise e if isinstance(e, OSError) else OSError(f"cannot write {path}: {e}") from None

    atomic_write(path, write)


class RunLock:
    """An exclusive lock on a run folder for as long as the process lives (the kernel drops it when the
    process dies, however it dies). A second process is refused at once, with the holder's pid. Without
    fcntl (Windows) the holder's pid in .lock is checked instead: a best effort, not atomic."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".lock"
        self.handle = open(self.path, "a+")
        if not self.take():
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise FileExistsError(
                f"{folder} is being written by another process (pid {holder}); wait for it to finish or stop it"
            )
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()

    def take(self) -> bool:
        """Lock the file (flock), or where there is no fcntl, check that no living process holds it."""
        if fcntl is None:
            self.handle.seek(0)
            holder = self.handle.read().strip()
            return not (holder.isdigit() and int(holder) != os.getpid() and alive(int(holder)))
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Give the lock up (also done by the kernel when the process ends)."""
        if not self.handle.closed:
            if fcntl is None:
                self.handle.seek(0)
                self.handle.truncate()  # no holder's pid left behind
            else:
                fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def read_epochs(run: Path, drop_torn: bool = False) -> list[dict]:
    """The per-epoch lines of a run folder's metrics.jsonl, in order. A line that is not JSON (a
    write cut short, before writes were atomic) is an error; with drop_torn it is left out, with a note."""
    path = Path(run) / "metrics.jsonl"
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            lines.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            if not drop_torn:
                raise ValueError(f"{path}, line {number}: not a JSON record (a torn write?): {line[:60]!r}") from None
            print(f"{path}, line {number}: not a JSON record (a torn write?), left out: {line[:60]!r}", flush=True)
    return lines


def encode_metadata(metadata: dict[str, object]) -> dict[str, str]:
    """Every value as JSON text (safetensors metadata holds strings only)."""
    return {k: json.dumps(v) for k, v in metadata.items()}


def decode_metadata(metadata: dict[str, str]) -> dict[str, object]:
    """The inverse of encode_metadata; a value that is not JSON (a file written by another tool) stays text."""
    decoded: dict[str, object] = {}
    for key, value in metadata.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
        except RecursionError:
            raise ValueError(f"checkpoint metadata {key!r} is nested too deeply to be read") from None
    return decoded


def check_tensors(state: dict[str, Tensor], subject: str, error: type[ValueError] = ValueError) -> None:
    """Refuse unusable weights with one error naming `subject` ("x.safetensors: these weights"): a
    counter that is not an integer, a weight that is not floating point, or one that holds NaN or
    infinite values (a diverged or damaged file)."""
    bad = []
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            if tensor.is_floating_point():
                bad.append(f"{key}: {tensor.dtype}, expected an integer counter")
        elif not tensor.is_floating_point():
            bad.append(f"{key}: {tensor.dtype}, expected floating point")
        elif tensor.device.type != "meta" and not torch.isfinite(tensor).all():
            bad.append(f"{key}: holds NaN or infinite values")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise error(f"{subject} cannot be used: {shown}")


def read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a clear error if it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors' own error type for a bad header
        raise ValueError(f"{path} is not a safetensors checkpoint: {e}") from None


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_model(path: Path, model: nn.Module, metadata: dict[str, object]) -> None:
    """Model weights + JSON-encoded metadata (arch, classes, input size, normalisation, ...)."""
    atomic_save_tensors(path, unwrap(model).state_dict(), encode_metadata(metadata))


def load_model_file(path: Path) -> tuple[dict[str, Tensor], dict[str, object]]:
    """(state dict, decoded metadata) of a file written by save_model."""
    tensors, meta = read_tensors(path)
    return tensors, decode_metadata(meta)


def checkpoint_metadata(
    arch: str,
    classes: list[str],
    input_size: int,
    options: dict[str, object],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    head_crop: bool = False,
    normalize: str = "fixed",
    grey: bool = False,
    tta_flip: bool = False,
    **extra: object,
) -> dict[str, object]:
    """What a checkpoint needs to be used on its own: architecture and builder options, classes,
    and the preprocessing its inputs went through (input size, normalisation, head crop, grey), and
    whether its logits average each image with its mirror image (tta_flip)."""
    return {
        "format": FORMAT,
        "arch": arch,
        "classes": list(classes),
        "num_classes": len(classes),
        "input_size": input_size,
        "mean": list(mean),
        "std": list(std),
        "head_crop": head_crop,
        "normalize": normalize,
        "grey": grey,
        "tta_flip": tta_flip,
        "options": options,
        **extra,
    }


def expect_arch(path: Path, meta: dict[str, object], arch: str) -> None:
    """Refuse weights of another architecture (a file without the field is taken at its word)."""
    if meta.get("arch", arch) != arch:
        raise ValueError(f"{path} holds {meta['arch']} weights, not {arch}")


def check_metadata(path: Path, meta: dict[str, object], state: dict[str, Tensor]) -> None:
    """Refuse metadata that cannot describe a usable model, before anything is built from it."""
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a resnet_scratch training checkpoint")
    arch = meta.get("arch")
    if arch not in MODEL_INFO:
        raise ValueError(f"{path}: unknown architecture {arch!r}")
    classes, n = meta.get("classes"), meta.get("num_classes")
    if (
        not isinstance(classes, list)
        or not all(isinstance(c, str) for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ValueError(f"{path}: its class list {classes!r} is not a list of distinct names")
    head = state.get(MODEL_INFO[arch].heads[0] + ".weight")
    if not isinstance(n, int) or n != len(classes) or head is None or head.shape[0] != n:
        raise ValueError(
            f"{path}: num_classes {n!r} does not match its {len(classes)} class names and its "
            f"head of {None if head is None else head.shape[0]} outputs"
        )
    size = meta.get("input_size")
    if not isinstance(size, int) or not MODEL_INFO[arch].min_size <= size <= 4096:
        raise ValueError(
            f"{path}: input_size {size!r} is not a size {arch} can take ({MODEL_INFO[arch].min_size} to 4096)"
        )
    for key in ("mean", "std"):
        v = meta.get(key)
        if not (
            isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
        ):
            raise ValueError(f"{path}: {key} {v!r} is not three numbers")
    if min(meta["std"]) <= 0:
        raise ValueError(f"{path}: std {meta['std']} must be positive")
    if meta.get("normalize", "fixed") not in NORMALIZATIONS:
        raise ValueError(f"{path}: normalize {meta['normalize']!r} is not one of {', '.join(NORMALIZATIONS)}")
    for key in ("grey", "tta_flip"):
        if not isinstance(meta.get(key, False), bool):
            raise ValueError(f"{path}: {key} {meta[key]!r} is not true or false")
    if not isinstance(meta.get("options"), dict):
        raise ValueError(f"{path}: options {meta.get('options')!r} is not a table of builder options")


def model_from_checkpoint(path: Path) -> tuple[nn.Module, dict[str, object]]:
    """A model rebuilt from a checkpoint's metadata and loaded with its weights (eval mode)."""
    state, meta = load_model_file(Path(path))
    check_metadata(path, meta, state)
    check_tensors(state, f"{path}: these weights")
    options = dict(meta["options"])
    try:
        model = build(meta["arch"], num_classes=meta["num_classes"], **options)
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path}: weights do not fit {meta['arch']} with {meta['num_classes']} classes: {str(e).splitlines()[0]}"
        ) from None
    meta.setdefault("head_crop", False)
    meta.setdefault("normalize", "fixed")  # checkpoints from before these settings
    meta.setdefault("grey", False)
    meta.setdefault("tta_flip", False)
    return model.eval(), meta


def _flatten_optimizer(state: dict) -> tuple[dict[str, Tensor], dict]:
    """optimizer.state_dict() -> (tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for param_id, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                scalars[f"{param_id}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for key, value in rest["scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_training_state(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    extra: dict[str, object],
) -> None:
    """Everything needed to continue after `epoch` (completed): state-<epoch>.safetensors + state.json.

    The JSON is written last and names the epoch, so a reader that finds it finds matching tensors.
    A pending best model is promoted to best.safetensors once the JSON has committed the epoch.
    """
    folder = Path(folder)
    opt_tensors, opt_rest = _flatten_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in unwrap(model).state_dict().items()}
    tensors.update(opt_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    atomic_save_tensors(folder / f"state-{epoch}.safetensors", tensors, {"epoch": str(epoch)})
    record = {
        "format": STATE_FORMAT,
        "epoch": epoch,
        "optimizer": opt_rest,
        "scheduler": scheduler.state_dict(),
        **extra,
    }
    current, previous = folder / "state.json", folder / PREVIOUS_STATE
    if current.is_file():  # the fallback if the newest state is found damaged (read_training_state)
        atomic_write_bytes(previous, current.read_bytes())
    atomic_write_text(current, json.dumps(record, indent=1))
    reconcile_best(folder, record)
    keep = {epoch} | ({state_epoch(previous)} if previous.is_file() else set())
    for old in folder.glob("state-*.safetensors"):  # only after both records are on disk
        if old.name not in {f"state-{k}.safetensors" for k in keep}:
            old.unlink(missing_ok=True)


def read_metadata(path: Path) -> dict[str, object]:
    """The decoded metadata of a safetensors file, without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return decode_metadata(dict(f.metadata() or {}))
    except Exception as e:  # safetensors' own error type for a bad header
        raise ValueError(f"{path} is not a safetensors checkpoint: {e}") from None


def reconcile_best(folder: Path, record: dict) -> None:
    """Make best.safetensors the best epoch that state.json commits: promote a pending best of that
    epoch (written, then interrupted before its rename), discard one of an uncommitted epoch. Only the
    process that holds the run folder's lock may call this."""
    pending = Path(folder) / PENDING_BEST
    if not pending.is_file():
        return
    try:
        epoch = read_metadata(pending).get("epoch")
    except ValueError:  # cut short by a crash: never committed, so nothing is lost
        pending.unlink(missing_ok=True)
        return
    if epoch == record.get("best", {}).get("epoch"):
        os.replace(pending, Path(folder) / "best.safetensors")
    else:
        pending.unlink(missing_ok=True)


def read_state_record(folder: Path, name: str = "state.json") -> dict[str, object]:
    """state.json's record: the last committed epoch, the best so far, optimizer and scheduler state."""
    record_path = Path(folder) / name
    if not record_path.is_file():
        raise FileNotFoundError(f"{folder} has no {name}: nothing to resume (did its first epoch finish?)")
    try:
        record = json.loads(record_path.read_text())
        int(record["epoch"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError):
        raise ValueError(f"{record_path} is not a training state written by resnet_scratch") from None
    if record.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{record_path} was written by an earlier resnet_scratch, which counted epochs from 0: it cannot be "
            f"resumed; start a new run from its weights (--weights {Path(folder) / 'last.safetensors'})"
        )
    return record


def state_epoch(path: Path) -> int | None:
    """The epoch a state record names, or None if it cannot be read."""
    try:
        return int(read_state_record(path.parent, path.name)["epoch"])
    except (OSError, ValueError):
        return None


def has_state(folder: Path) -> bool:
    """Whether a run folder holds a training state to resume from (state.json, or the one before it)."""
    return (Path(folder) / "state.json").is_file() or (Path(folder) / PREVIOUS_STATE).is_file()


def committed_record(folder: Path) -> dict[str, object]:
    """state.json's record, or the one before it when state.json itself is damaged or gone."""
    try:
        return read_state_record(folder)
    except (ValueError, FileNotFoundError):
        if not (Path(folder) / PREVIOUS_STATE).is_file():
            raise
        return read_state_record(folder, PREVIOUS_STATE)


def read_training_state(folder: Path) -> tuple[dict[str, object], dict[str, Tensor]]:
    """(state.json's record, the tensors of the epoch it names). If either is damaged (a power cut
    before it reached the disk), the previous epoch's state, kept for that, is taken instead."""
    folder = Path(folder)
    try:
        record = read_state_record(folder)
        tensors, _ = read_tensors(folder / f"state-{int(record['epoch'])}.safetensors")
        return record, tensors
    except (OSError, ValueError) as newest:
        if not (folder / PREVIOUS_STATE).is_file():
            raise
        record = read_state_record(folder, PREVIOUS_STATE)
        tensors, _ = read_tensors(folder / f"state-{int(record['epoch'])}.safetensors")
        note = f"the newest state is missing or damaged ({newest})"
        print(f"{note}; resuming from the state before it, after epoch {int(record['epoch'])}", flush=True)
    best = folder / "best.safetensors"
    if best.is_file():  # promoted from the epoch now abandoned: it stays the best so far, so the two agree
        meta = read_metadata(best)
        if isinstance(meta.get("epoch"), int) and meta["epoch"] > int(record["epoch"]):
            record["best"] = {"val_accuracy": meta["val_accuracy"], "epoch": meta["epoch"]}
    return record, tensors


def load_training_state(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, object]:
    """Restore what save_training_state wrote; returns the JSON record (its "epoch" is done)."""
    record, tensors = read_training_state(folder)
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        unwrap(model).load_state_dict(weights)
        optimizer.load_state_dict(_unflatten_optimizer(tensors, record["optimizer"]))
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(
            f"{folder}: its saved state does not fit this model and optimizer: {str(e).splitlines()[0]}"
        ) from None
    scheduler.load_state_dict(record["scheduler"])
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda_states = [tensors[k] for k in cuda_keys]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return record
