"""Starting from pretrained weights: read them, put them into a model with a new head, freeze.

The torchvision transfer-learning recipe: keep the ImageNet backbone, give the network a freshly
initialised classifier for the new classes, and either train everything (fine-tuning) or only the
new head with the backbone frozen (feature extraction).
"""

from pathlib import Path

from torch import Tensor, nn


def read_weights(arch: str, weights: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Our state dict and metadata from "imagenet", a torchvision .pth/.pt or our .safetensors."""
    # weights_convert imports the model zoo, so it is imported here, when weights are asked for.
    from weights_convert import ConversionError, find_imagenet_file, from_torchvision
    from weights_convert import load_pth, load_safetensors

    path = find_imagenet_file(arch) if weights == "imagenet" else Path(weights)
    if path.suffix == ".safetensors":
        state, metadata = load_safetensors(path)
        if metadata.get("arch", arch) != arch:
            raise ConversionError(f"{path} holds {metadata['arch']} weights, not {arch}")
        return state, metadata
    torchvision_state, _ = load_pth(path)
    # torchvision's InceptionV3 weights expect transform_input=True (see weights_convert).
    metadata = {"transform_input": "true"} if arch == "inception_v3" else {}
    return from_torchvision(torchvision_state, arch), metadata


def transplant(model: nn.Module, state: dict[str, Tensor], heads: tuple[str, ...]) -> list[str]:
    """Load `state` into `model`, keeping the model's fresh head(s) where the class count differs.

    Every backbone tensor must be present with the right shape; an auxiliary head the model was
    built without may be left over. Returns the keys that kept their fresh initialisation.
    """
    from weights_convert import ConversionError

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
        raise ConversionError(
            f"the weights do not fit this {type(model).__name__}: " + "; ".join(problems[:8])
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
                module.num_features, eps=module.eps, momentum=module.momentum,
                affine=module.affine, track_running_stats=module.track_running_stats,
            ).to(device=module.weight.device, dtype=module.weight.dtype)
            frozen.load_state_dict(module.state_dict())
            frozen.requires_grad_(False)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, frozen.train())
