"""One frozen dataclass of settings per run: defaults < a TOML file (--config) < --key value flags.

Every setting carries its help text and its check, so the command line (`train --help`) is
generated from the dataclass and lists them all. Defaults follow the original recipe
(torchvision's transfer-learning tutorial): SGD with lr 1e-3 and momentum 0.9, StepLR every 7
epochs by 0.1, cross-entropy. An unknown key or a bad value is an error that names the key.
"""

import argparse
import dataclasses
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from .data import dataset_root, default_external_root
from .data.transforms import NORMALIZATIONS
from .models import MODEL_INFO, MODELS
from .models.inception import MIN_SIZE_AUX


class ConfigError(ValueError):
    """A setting that does not exist or has a value it cannot take."""


def setting(default: object, help: str, check: Callable[[typing.Any], bool] | None = None, expected: str = ""):
    """A Config field with its help text and its check (`expected` says what the check wants)."""
    return field(default=default, metadata={"help": help, "check": check, "expected": expected})


def _folder_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


@dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Saved, resolved, as config.json in the run folder."""

    # The run and its data
    name: str = setting("run", "the run folder is runs_dir/name", _folder_name, "a folder name, no path")
    runs_dir: str = setting("runs", "where run folders go")
    data: str | None = setting(
        str(dataset_root()) if dataset_root() else None,
        "the dataset: a folder with Training/ and Testing/ ($RESNET_SCRATCH_DATA, or ../shared/data beside a checkout)",
    )
    clean_list: str | None = setting(None, "leak-free Testing files (audit --write-clean-list); none: computed")
    cache_dir: str | None = setting(None, "keep decoded images here between runs")
    external: str | None = setting(
        str(default_external_root()) if default_external_root() else None,
        "folders of other collections scored after training, when present",
    )

    # The model
    model: str = setting("resnet18", "the architecture", lambda v: v in MODELS, f"one of {', '.join(MODELS)}")
    skip: bool = setting(True, "ResNet: false builds the plain network of the same depth (ablation)")
    shortcut: str = setting(
        "B",
        "ResNet shortcuts (the paper's Table 3): A zero-padding, B projections where "
        "the shape changes, C projections everywhere",
        lambda v: v in ("A", "B", "C"),
        '"A", "B" or "C"',
    )
    dropout: float | None = setting(
        None,
        "dropout before the classifier; none: the model's own default",
        lambda v: v is None or 0 <= v < 1,
        "in [0, 1)",
    )
    stride_on: str = setting(
        "3x3", 'ResNet bottleneck: "3x3" (v1.5) or "1x1" (v1)', lambda v: v in ("3x3", "1x1"), '"3x3" or "1x1"'
    )
    zero_init_residual: bool = setting(False, "ResNet: each residual branch starts at zero (its last BatchNorm weight)")
    weights: str | None = setting(None, 'start from "imagenet" or a .pth / .safetensors file; none: random')
    freeze: str | None = setting(
        None,
        'none (fine-tune everything) or "backbone" (train the head only)',
        lambda v: v in (None, "backbone"),
        'unset or "backbone"',
    )
    aux_logits: bool = setting(True, "InceptionV3's auxiliary head (needs 299 px inputs)")
    aux_weight: float = setting(0.4, "InceptionV3's auxiliary loss weight", lambda v: v >= 0, "not negative")

    # What the network sees
    image_size: int | None = setting(
        None,
        "input size in px; none: the model's (224; InceptionV3 299)",
        lambda v: v is None or 32 <= v <= 4096,
        "from 32 to 4096",
    )
    min_image_size: int | None = setting(
        None,
        "progressive resizing: training starts at this size and grows to image_size by resize_until; none: off",
        lambda v: v is None or 32 <= v <= 4096,
        "from 32 to 4096",
    )
    resize_until: float = setting(
        0.75,
        "progressive resizing: the share of the epochs by which the size, grown in 16 px steps, reaches image_size",
        lambda v: 0 < v <= 1,
        "in (0, 1]",
    )
    augment: bool = setting(True, "false: train on resize + centre crop only (no random crops or flips)")
    crop_scale_min: float = setting(
        0.08, "RandomResizedCrop's smallest area fraction", lambda v: 0 < v <= 1, "in (0, 1]"
    )
    crop_scale_max: float = setting(
        1.0,
        "RandomResizedCrop's largest area fraction (equal to the smallest: crops of one size)",
        lambda v: 0 < v <= 1,
        "in (0, 1]",
    )
    crop_ratio_max: float = setting(
        4 / 3,
        "RandomResizedCrop's widest aspect ratio, width / height; its inverse is the tallest (1: square crops)",
        lambda v: 1 <= v <= 4,
        "from 1 to 4",
    )
    photometric: bool = setting(
        False, "per-image gamma, contrast, brightness, blur and noise in training (what another scanner changes)"
    )
    head_crop: bool = setting(
        False,
        "crop every image to the head's bounding box before anything else (training, evaluation and predict alike)",
    )
    normalize: str = setting(
        "fixed",
        '"fixed": the model\'s mean and std (ImageNet\'s); "image": each image by its own mean and std; '
        '"equalize": each image histogram-equalised, then as "image" (training, evaluation and predict alike)',
        lambda v: v in NORMALIZATIONS,
        f"one of {', '.join(NORMALIZATIONS)}",
    )
    grey: bool = setting(False, "replace the colour channels by their mean (training, evaluation and predict alike)")
    tta_flip: bool = setting(
        False,
        "evaluation, validation and predict: average each image's logits with its mirror image's "
        "(test-time augmentation, at twice the cost)",
    )
    gin: float = setting(
        0.0,
        "training: share of images remapped by GIN, a random shallow convolutional network (0: off)",
        lambda v: 0 <= v <= 1,
        "in [0, 1]",
    )
    gin_blend: float = setting(
        1.0,
        "GIN: the largest weight of the remapped image in its blend with the image (the paper's: 1)",
        lambda v: 0 < v <= 1,
        "in (0, 1]",
    )
    gin_depth: int = setting(4, "GIN: random convolution layers (the paper's: 4)", lambda v: 2 <= v <= 8, "from 2 to 8")
    randconv: float = setting(
        0.0,
        "training: share of images through one random convolution (RandConv; 0: off)",
        lambda v: 0 <= v <= 1,
        "in [0, 1]",
    )
    randconv_blend: float = setting(
        1.0,
        "RandConv: the largest weight of the filtered image in its blend with the image (the paper's: 1)",
        lambda v: 0 < v <= 1,
        "in (0, 1]",
    )
    randconv_kernel: int = setting(
        7,
        "RandConv: the largest kernel size (odd sizes from 1 are drawn; the paper's: 7)",
        lambda v: v >= 1 and v % 2 == 1,
        "odd, at least 1",
    )
    location_scale: float = setting(
        0.0,
        "training: share of images through SLAug's location-scale transform, a random Bezier intensity curve, "
        "scale and shift (0: off)",
        lambda v: 0 <= v <= 1,
        "in [0, 1]",
    )
    location_scale_invert: float = setting(
        0.5,
        "location-scale: share of curves that fall, so that dark turns bright (SLAug's, for a class region: 0.5)",
        lambda v: 0 <= v <= 1,
        "in [0, 1]",
    )
    train_fraction: float = setting(
        1.0, "train on a seeded, class-stratified fraction of the training rows", lambda v: 0 < v <= 1, "in (0, 1]"
    )
    weak_tumour: str | None = setting(
        None,
        "brain-MRI study: a folder holding tumour/ (type unknown); half of it (by a hash of each file name) is "
        "added to training with the partial-label loss; a relative path lies inside `external` (the working "
        "folder if that is none)",
    )
    train_eval: bool = setting(
        False,
        "also score as many training rows as validation has, in eval mode on centre crops like validation, "
        "after every epoch: a train/validation gap measured the same way on both sides",
    )
    val_fraction: float = setting(
        0.1,
        "share of Training held out for validation (groups of near duplicates kept on one side)",
        lambda v: 0 < v < 1,
        "in (0, 1)",
    )

    # Optimisation
    epochs: int = setting(25, "training epochs", lambda v: v >= 1, "at least 1")
    batch_size: int = setting(
        32, "the global batch: split evenly across torchrun's processes", lambda v: v >= 1, "at least 1"
    )
    lr: float = setting(1e-3, "learning rate (the peak of one-cycle)", lambda v: v > 0, "positive")
    momentum: float = setting(0.9, "SGD momentum", lambda v: 0 <= v < 1, "in [0, 1)")
    ema: float = setting(
        0.0,
        "decay per step of an exponential moving average of the weights (0: off); when on, the average is "
        "validated, chosen and tested, and the raw weights are validated beside it",
        lambda v: 0 <= v < 1,
        "in [0, 1)",
    )
    weight_decay: float = setting(0.0, "SGD weight decay", lambda v: v >= 0, "not negative")
    nesterov: bool = setting(False, "Nesterov momentum")
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing", lambda v: 0 <= v < 1, "in [0, 1)")
    schedule: str = setting(
        "step",
        '"step": StepLR per epoch; "onecycle": OneCycleLR per batch, peaking at lr',
        lambda v: v in ("step", "onecycle"),
        '"step" or "onecycle"',
    )
    step_size: int = setting(7, "StepLR: epochs between decays", lambda v: v >= 1, "at least 1")
    gamma: float = setting(0.1, "StepLR: the decay factor", lambda v: 0 < v <= 1, "in (0, 1]")
    checkpoint_every: int = setting(
        1,
        "epochs between saves of the last weights and the training state (a crash loses at most this many)",
        lambda v: v >= 1,
        "at least 1",
    )
    seed: int = setting(
        0, "seeds the split, the initialisation and the augmentation", lambda v: 0 <= v < 2**63, "from 0 to 2^63 - 1"
    )

    # Where and how it runs
    device: str = setting(
        "auto",
        '"auto": CUDA when present, else the CPU',
        lambda v: v == "auto" or re.fullmatch(r"cpu|cuda(:\d+)?", v) is not None,
        '"auto", "cpu", "cuda" or "cuda:N"',
    )
    bf16: bool = setting(True, "autocast to bfloat16 where the device supports it")
    channels_last: bool = setting(True, "channels-last memory layout")
    compile: bool = setting(False, "torch.compile the model")
    deterministic: bool = setting(False, "bit-for-bit repeatable runs (slower kernels on CUDA)")

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata["check"]
            if check is not None and not check(getattr(self, f.name)):
                raise ConfigError(f"{f.name} = {getattr(self, f.name)!r}: must be {f.metadata['expected']}")
        if not self.augment and (self.photometric or self.gin or self.randconv or self.location_scale):
            raise ConfigError(
                "augment = false trains on centre crops only: photometric, gin, randconv and location_scale need it on"
            )
        if self.crop_scale_min > self.crop_scale_max:
            raise ConfigError(
                f"crop_scale_min = {self.crop_scale_min}: larger than crop_scale_max {self.crop_scale_max}"
            )
        if self.freeze and not self.weights:
            raise ConfigError('freeze = "backbone" needs weights (imagenet or a file)')
        if self.min_image_size is not None and self.min_image_size > self.input_size:
            raise ConfigError(
                f"min_image_size = {self.min_image_size}: larger than the input size {self.input_size}; "
                "lower it, or set it to none to train at one size"
            )
        smallest = MODEL_INFO[self.model].min_size
        if self.min_image_size is not None and self.min_image_size < smallest:
            raise ConfigError(f"min_image_size = {self.min_image_size}: {self.model} needs at least {smallest}")
        if self.image_size is not None and self.image_size < smallest:
            raise ConfigError(f"image_size = {self.image_size}: {self.model} needs at least {smallest}")
        if self.model == "inception_v3" and self.aux_logits and self.input_size < MIN_SIZE_AUX:
            raise ConfigError(
                f"image_size = {self.input_size}: InceptionV3's auxiliary head needs at least "
                f"{MIN_SIZE_AUX}; set aux_logits = false below that"
            )

    def model_options(self) -> dict[str, object]:
        """The builder options these settings ask for (only those the model takes)."""
        options: dict[str, object] = {}
        if self.model.startswith("resnet"):
            options |= {"skip": self.skip, "shortcut": self.shortcut, "stride_on": self.stride_on}
            if self.zero_init_residual:  # only when set: how a model starts, not what it computes
                options["zero_init_residual"] = True
        if self.model == "inception_v3":
            options["aux_logits"] = self.aux_logits
        if self.dropout is not None:
            options["dropout"] = self.dropout
        return options

    @property
    def input_size(self) -> int:
        """image_size, or the model's own."""
        return self.image_size or MODEL_INFO[self.model].input_size

    def epoch_size(self, epoch: int) -> int:
        """The training size of `epoch` (from 1): input_size, or under progressive resizing a size that
        grows linearly from min_image_size at epoch 1 to input_size at resize_until of the epochs, in
        steps of 16 px (fast.ai's DAWNBench ImageNet entries; FFCV's ResNet recipes)."""
        if self.min_image_size is None:
            return self.input_size
        last = max(2, round(self.resize_until * self.epochs))  # the first epoch at full size
        t = min(1.0, (epoch - 1) / (last - 1))
        size = self.min_image_size + t * (self.input_size - self.min_image_size)
        return min(self.input_size, max(self.min_image_size, 16 * round(size / 16)))


def _base_type(annotation: object) -> tuple[type, bool]:
    """(the type, whether none is allowed) of a field's annotation."""
    optional = isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation)
    base = next(a for a in typing.get_args(annotation) if a is not type(None)) if optional else annotation
    return base, optional


def _coerce(key: str, value: object, annotation: object) -> object:
    """`value` (from TOML or a flag's text) as the field's type, or a ConfigError naming `key`."""
    base, optional = _base_type(annotation)
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
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError(value)  # inf and nan pass every bound below, then fail at the first batch
            return float(value)
        if base is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)  # a list or table is no name, though str() would make one of it
    except (ValueError, OverflowError, TypeError):
        pass
    kind = getattr(base, "__name__", str(base)) + (" (a finite number)" if base is float else "")
    raise ConfigError(f"{key} = {value!r}: expected {kind}{' or none' if optional else ''}")


# Named recipes shipped with the package: `--config main_cpu` is recipes/main_cpu.toml.
RECIPES = Path(__file__).resolve().parent / "recipes"


def recipe_path(name: str) -> Path:
    """The packaged recipe `name` (a file name without .toml); an unknown one is a ConfigError listing them."""
    path = RECIPES / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.toml")))
        raise ConfigError(f"--config {name}: no such file, nor a recipe of the package ({known})")
    return path


def read_settings(path: str | Path) -> dict[str, object]:
    """The settings --config names: a TOML file, a packaged recipe by name (main_cpu), or a run's
    config.json, whose recorded settings repeat the run (all but its name and folder)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        return read_toml(recipe_path(path.name))
    if path.suffix == ".json":
        try:
            recorded = json.loads(path.read_text())["config"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, RecursionError) as e:
            raise ConfigError(f"{path}: not a run's config.json ({type(e).__name__})") from None
        return {k: v for k, v in recorded.items() if k not in ("name", "runs_dir")}
    return read_toml(path)


def read_toml(path: Path) -> dict[str, object]:
    """The settings of a TOML file; any problem with it is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_config(path: Path | None = None, overrides: dict[str, object] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (e.g. the settings given as flags)."""
    hints = typing.get_type_hints(Config)
    known = {f.name for f in fields(Config)}
    values: dict[str, object] = {}
    sources: list[tuple[str, dict]] = []
    if path is not None:
        sources.append((str(path), read_settings(path)))
    sources.append(("flags", overrides or {}))
    for origin, table in sources:
        for key, value in table.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} (from {origin}); known: {', '.join(sorted(known))}")
            values[key] = _coerce(key, value, hints[key])
    return Config(**values)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One --key flag per Config field, with its help, default and check; values stay text until
    load_config checks them, and a flag not given stays absent (so the TOML file can set it)."""
    hints = typing.get_type_hints(Config)
    group = parser.add_argument_group("settings (defaults < --config file < these flags)")
    for f in fields(Config):
        base, optional = _base_type(hints[f.name])
        kind = {bool: "BOOL", int: "INT", float: "FLOAT"}.get(base, "TEXT") + ("|none" if optional else "")
        text = (
            f.metadata["help"]
            + f" (default: {f.default}"
            + (f"; {f.metadata['expected']}" if f.metadata["expected"] else "")
            + ")"
        )
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            metavar=kind,
            default=argparse.SUPPRESS,
            help=text.replace("%", "%%"),
        )


def flags_given(args: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags in parsed arguments."""
    return {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}


def to_dict(config: Config) -> dict[str, object]:
    """The settings as a plain dict (for config.json)."""
    return dataclasses.asdict(config)
