"""Starting from pretrained weights: read them, put them into a model with a new head, freeze.

The torchvision transfer-learning recipe: keep the ImageNet backbone, give the network a freshly
initialised classifier for the new classes, and either train everything (fine-tuning) or only the
new head with the backbone frozen (feature extraction).
"""

import inspect
import warnings
from pathlib import Path

from torch import Tensor, nn

from .checkpoint import check_tensors, expect_arch, load_model_file
from .models import MODEL_INFO, MODELS
from .models import build as build_fresh
from .models.resnet import RESNET_SPECS, Bottleneck


def build(name: str, *, weights: str | Path | None = None, freeze: str | None = None, **options: object) -> nn.Module:
    """Model `name` (see resnet_scratch.models.build for `options`), optionally from pretrained weights.

    weights: None (random init), "imagenet" (torchvision's ImageNet file, found or downloaded by
    weights_convert.find_imagenet_file), or a path to a torchvision .pth or our .safetensors (a
    checkpoint of a run, or a converted file). The backbone is loaded. A run's checkpoint keeps its own
    head; a num_classes other than the file's gives a fresh head (with a warning for a run's
    checkpoint). freeze: None (train everything) or
    "backbone" (only the head trains; frozen BatchNorm layers stay in eval mode).
    """
    if freeze not in (None, "backbone"):
        raise ValueError(f'freeze must be None or "backbone", got {freeze!r}')
    if freeze == "backbone" and weights is None:
        raise ValueError('freeze="backbone" needs pretrained weights: a random backbone cannot be frozen usefully')
    if weights is None:
        return build_fresh(name, **options)
    if name not in MODEL_INFO:
        build_fresh(name)  # the unknown-name error, with the list of names
    state, metadata = read_weights(name, weights)
    check_same_function(name, options, metadata.get("options") or {}, str(weights))
    saved_classes = metadata.get("num_classes")
    if "num_classes" not in options and isinstance(saved_classes, int):
        options["num_classes"] = saved_classes  # a run's checkpoint: its own head, never a new one
    elif isinstance(saved_classes, int) and options["num_classes"] != saved_classes:
        warnings.warn(
            f"{weights} was trained on {saved_classes} classes ({', '.join(metadata.get('classes', []))}); "
            f"num_classes={options['num_classes']} gives it a new, untrained head",
            stacklevel=2,
        )
    if name == "inception_v3" and "transform_input" not in options:
        # a converted file says so at the top; a run's checkpoint among its builder options
        saved = metadata.get("transform_input", (metadata.get("options") or {}).get("transform_input", False))
        options["transform_input"] = bool(saved)
    model = build_fresh(name, **options)
    heads = MODEL_INFO[name].heads
    transplant(model, state, heads)
    if freeze == "backbone":
        freeze_backbone(model, heads)
    return model


# Builder options that change what the same tensors compute (torchvision's layout is the default of each).
FUNCTION_OPTIONS = ("skip", "shortcut", "stride_on")


def check_same_function(name: str, asked: dict[str, object], saved: dict[str, object], source: str) -> None:
    """Refuse weights saved under other builder options than `asked`: a v1 ResNet-50 (stride_on="1x1")
    has v1.5's keys and shapes and would load, then compute another function. A file without options
    (torchvision's, or one converted from it) has torchvision's layout: every builder default."""
    defaults = {
        key: p.default for key, p in inspect.signature(MODELS[name]).parameters.items() if key in FUNCTION_OPTIONS
    }
    if "stride_on" in defaults and RESNET_SPECS[int(name.removeprefix("resnet"))][0] is not Bottleneck:
        del defaults["stride_on"]  # basic blocks have no 1x1: v1 and v1.5 are the same network
    for key, default in defaults.items():
        want, have = asked.get(key, default), saved.get(key, default)
        if want != have:
            raise ValueError(
                f"{source} holds weights of a {name} with {key}={have!r}; this model has {key}={want!r}, on which "
                "the same tensors compute another function"
            )


def read_weights(arch: str, weights: str | Path) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Our state dict and decoded metadata from "imagenet", a torchvision .pth/.pt or our .safetensors."""
    # weights_convert imports the models (conversion depends on them, never the reverse); imported
    # here, when weights are asked for, so that importing either package first works.
    from weights_convert import find_imagenet_file, from_torchvision, load_pth

    path = find_imagenet_file(arch) if weights == "imagenet" else Path(weights)
    if path.suffix == ".safetensors":
        state, metadata = load_model_file(path)
        expect_arch(path, metadata, arch)
        check_tensors(state, f"{path}: these weights")
        return state, metadata
    torchvision_state, _ = load_pth(path)
    # torchvision's InceptionV3 weights expect transform_input=True (see weights_convert).
    metadata = {"transform_input": True} if arch == "inception_v3" else {}
    return from_torchvision(torchvision_state, arch), metadata


def transplant(model: nn.Module, state: dict[str, Tensor], heads: tuple[str, ...]) -> list[str]:
    """Load `state` into `model`, keeping the model's fresh head(s) where the class count differs.

    Every backbone tensor must be present with the right shape; an auxiliary head the model was
    built without may be left over. Returns the keys that kept their fresh initialisation.
    """

    def in_head(key: str) -> bool:
        return any(key.startswith(head + ".") for head in heads)

    target = model.state_dict()
    merged, fresh, problems = {}, [], []
    for key, tensor in target.items():
        source = state.get(key)
        if source is not None and source.shape == tensor.shape:
            merged[key] = source
        elif in_head(key):
            merged[key] = tensor
            fresh.append(key)
        elif source is None:
            problems.append(f"missing {key}")
        else:
            problems.append(f"{key}: {tuple(source.shape)}, model has {tuple(tensor.shape)}")
    leftover = [k for k in state if k not in target and not k.startswith("AuxLogits.")]
    problems += [f"unexpected {k}" for k in leftover]
    if problems:
        raise ValueError(
            f"the weights do not fit this {type(model).__name__}: "
            + "; ".join(problems[:8])
            + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        )
    model.load_state_dict(merged)
    return fresh


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode: a frozen backbone keeps its pretrained statistics."""

    def train(self, mode: bool = True) -> "FrozenBatchNorm2d":
        """Ignore `mode`: always evaluate with the running statistics, never update them."""
        return super().train(False)


def freeze_backbone(model: nn.Module, heads: tuple[str, ...]) -> None:
    """Only the head(s) keep requires_grad; every BatchNorm outside them is frozen in eval mode."""
    for key, parameter in model.named_parameters():
        parameter.requires_grad = any(key.startswith(head + ".") for head in heads)
    for name, module in list(model.named_modules()):
        if type(module) is nn.BatchNorm2d and not any(name.startswith(h + ".") for h in heads):
            frozen = FrozenBatchNorm2d(
                module.num_features,
                eps=module.eps,
                momentum=module.momentum,
                affine=module.affine,
                track_running_stats=module.track_running_stats,
            ).to(device=module.weight.device, dtype=module.weight.dtype)
            frozen.load_state_dict(module.state_dict())
            frozen.requires_grad_(False)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, frozen.train())
