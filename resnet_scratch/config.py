"""One frozen dataclass of settings per run: defaults < a TOML file (--config) < --key value flags.

Defaults follow the original recipe (torchvision's transfer-learning tutorial): SGD with lr 1e-3 and
momentum 0.9, StepLR every 7 epochs by 0.1, cross-entropy. Every value is validated where it enters;
an unknown key or a bad value is an error that names the key.
"""

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from .data import default_root
from .models import MODELS


class ConfigError(ValueError):
    """A setting that does not exist or has a value it cannot take."""


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Saved, resolved, as config.json in the run folder."""

    name: str = "run"  # the run folder is runs_dir/name
    runs_dir: str = "runs"
    data: str = str(default_root())
    clean_list: str | None = None  # leak-free Testing files (python -m resnet_scratch audit --write-clean-list)
    cache_dir: str | None = None  # keep decoded images between runs

    model: str = "resnet18"
    skip: bool = True  # ResNet: False builds the plain network (ablation)
    dropout: float | None = None  # None: the model's own default
    stride_on: str = "3x3"  # ResNet bottleneck: "3x3" (v1.5) or "1x1" (v1)
    weights: str | None = None  # None, "imagenet", or a .pth / .safetensors path
    freeze: str | None = None  # None (fine-tune everything) or "backbone"
    aux_logits: bool = True  # InceptionV3's auxiliary head (needs 299 px inputs; False below that)
    aux_weight: float = 0.4  # InceptionV3's auxiliary loss

    image_size: int | None = None  # None: the model's (224; 299 for InceptionV3)
    augment: bool = True  # False: train on resize + centre crop only (no random crops or flips)
    crop_scale_min: float = 0.08  # RandomResizedCrop's smallest area fraction
    epochs: int = 25
    batch_size: int = 32  # the global batch: split evenly across torchrun's processes
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    label_smoothing: float = 0.0
    schedule: str = "step"  # "step": StepLR per epoch; "onecycle": OneCycleLR per batch, peaking at lr
    step_size: int = 7  # StepLR
    gamma: float = 0.1
    val_fraction: float = 0.1
    seed: int = 0

    device: str = "auto"  # "auto": CUDA when present, else CPU
    bf16: bool = True  # autocast to bfloat16 where the device supports it
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # bit-for-bit repeatable runs (slower kernels on CUDA)

    def __post_init__(self) -> None:
        checks = {
            "model": (self.model in MODELS, f"one of {', '.join(MODELS)}"),
            "stride_on": (self.stride_on in ("3x3", "1x1"), '"3x3" or "1x1"'),
            "freeze": (self.freeze in (None, "backbone"), 'unset or "backbone"'),
            "dropout": (self.dropout is None or 0 <= self.dropout < 1, "in [0, 1)"),
            "epochs": (self.epochs >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "lr": (self.lr > 0, "positive"),
            "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, "not negative"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
            "step_size": (self.step_size >= 1, "at least 1"),
            "schedule": (self.schedule in ("step", "onecycle"), '"step" or "onecycle"'),
            "gamma": (0 < self.gamma <= 1, "in (0, 1]"),
            "val_fraction": (0 < self.val_fraction < 1, "in (0, 1)"),
            "crop_scale_min": (0 < self.crop_scale_min <= 1, "in (0, 1]"),
            "image_size": (self.image_size is None or self.image_size >= 32, "at least 32"),
            "aux_weight": (self.aux_weight >= 0, "not negative"),
            "device": (self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"), '"auto", "cpu" or "cuda[:N]"'),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"{key} = {getattr(self, key)!r}: must be {expected}")
        if self.freeze and not self.weights:
            raise ConfigError('freeze = "backbone" needs weights (imagenet or a file)')


def _coerce(key: str, value: object, annotation: object) -> object:
    """`value` (from TOML or a flag's text) as the field's type, or a ConfigError naming `key`."""
    optional = isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation)
    base = next(a for a in typing.get_args(annotation) if a is not type(None)) if optional else annotation
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        if value is None:
            raise ConfigError(f"{key} cannot be unset")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if base is str:
            return str(value)
    except ValueError:
        pass
    kind = getattr(base, "__name__", str(base))
    raise ConfigError(f"{key} = {value!r}: expected {kind}{' or none' if optional else ''}")


def load_config(path: Path | None = None, overrides: dict[str, object] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (e.g. parsed --key value flags)."""
    hints = typing.get_type_hints(Config)
    known = {f.name for f in fields(Config)}
    values: dict[str, object] = {}
    sources: list[tuple[str, dict]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            sources.append((str(path), tomllib.loads(path.read_text())))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    sources.append(("flags", overrides or {}))
    for origin, table in sources:
        for key, value in table.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} (from {origin}); known: {', '.join(sorted(known))}")
            values[key] = _coerce(key, value, hints[key])
    return Config(**values)


def parse_flags(args: list[str]) -> dict[str, str]:
    """["--lr", "0.01", "--bf16", "false"] -> {"lr": "0.01", "bf16": "false"}; values stay text."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if not flag.startswith("--"):
            raise ConfigError(f"expected --key value, got {flag!r}")
        if "=" in flag:
            key, value = flag[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"{flag} needs a value")
            key, value = flag[2:], args[i + 1]
            i += 2
        out[key.replace("-", "_")] = value
    return out


def to_dict(config: Config) -> dict[str, object]:
    """The settings as a plain dict (for config.json)."""
    return dataclasses.asdict(config)
