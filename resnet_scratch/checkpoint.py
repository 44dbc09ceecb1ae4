"""Checkpoints without pickle: weights and tensors in safetensors, everything else in JSON.

Every file is written to a temporary name and renamed into place, so a crash (even SIGKILL) leaves
either the previous file or the new one, never half of one.
"""

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_epochs(run: Path) -> list[dict]:
    """The per-epoch lines of a run folder's metrics.jsonl, in order."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """safetensors file with string metadata, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


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
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    atomic_save_tensors(path, unwrap(model).state_dict(), meta)


def load_model_file(path: Path) -> tuple[dict[str, Tensor], dict[str, object]]:
    """(state dict, decoded metadata) of a file written by save_model."""
    tensors, meta = read_tensors(path)
    try:
        return tensors, {k: json.loads(v) for k, v in meta.items()}
    except json.JSONDecodeError:
        raise ValueError(f"{path} was not written by resnet_scratch (its metadata is not JSON)") from None


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
    """Everything needed to continue after `epoch` (completed): state.safetensors + state.json.

    The JSON is written last and names the epoch, so a reader that finds it finds matching tensors.
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
    record = {"epoch": epoch, "optimizer": opt_rest, "scheduler": scheduler.state_dict(), **extra}
    atomic_write_text(folder / "state.json", json.dumps(record, indent=1))
    for old in folder.glob("state-*.safetensors"):  # keep only the one state.json names
        if old.name != f"state-{epoch}.safetensors":
            old.unlink(missing_ok=True)


def load_training_state(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, object]:
    """Restore what save_training_state wrote; returns the JSON record (its "epoch" is done)."""
    folder = Path(folder)
    record_path = folder / "state.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{folder} has no state.json: nothing to resume (did its first epoch finish?)")
    record = json.loads(record_path.read_text())
    tensors, _ = read_tensors(folder / f"state-{record['epoch']}.safetensors")
    unwrap(model).load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_unflatten_optimizer(tensors, record["optimizer"]))
    scheduler.load_state_dict(record["scheduler"])
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda_states = [tensors[k] for k in cuda_keys]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return record
