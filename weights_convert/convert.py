"""Strict state-dict conversion between torchvision's key names and ours."""

from functools import lru_cache

import torch
from torch import Tensor

from resnet_scratch.checkpoint import check_tensors
from resnet_scratch.models import MODEL_INFO, build

from .tables import TABLES, Table


class ConversionError(ValueError):
    """Weights that do not fit the architecture, or a file that cannot be used as weights."""


def rename(key: str, table: Table, *, to_ours: bool) -> str | None:
    """The key in the other naming, or None where no prefix of the table matches."""
    pairs = [(theirs, ours) for ours, theirs in table.prefixes.items()] if to_ours else list(table.prefixes.items())
    inner = {v: k for k, v in table.inner.items()} if to_ours else table.inner
    for src, dst in sorted(pairs, key=lambda pair: -len(pair[0])):  # longest prefix wins
        if key == src or key.startswith(src + "."):
            rest = key[len(src) :].split(".")
            return dst + ".".join(inner.get(segment, segment) for segment in rest)
    return None


@lru_cache(maxsize=32)
def our_layout(arch: str, num_classes: int = 1000, aux_logits: bool = True) -> dict[str, torch.Size]:
    """Key -> shape of our model `arch` (built on the meta device: no memory, no compute).

    Cached: treat the returned dict as read-only.
    """
    if arch not in TABLES:
        raise ConversionError(f"unknown architecture {arch!r}; choose one of: {', '.join(TABLES)}")
    options: dict[str, object] = {"num_classes": num_classes}
    if arch == "inception_v3":
        options["aux_logits"] = aux_logits
    with torch.device("meta"):
        model = build(arch, **options)
    return {key: t.shape for key, t in model.state_dict().items()}


def torchvision_layout(arch: str, num_classes: int = 1000, aux_logits: bool = True) -> dict[str, torch.Size]:
    """Key -> shape of torchvision's model `arch`, derived from ours through the table."""
    table = TABLES[arch]
    layout = {}
    for key, shape in our_layout(arch, num_classes, aux_logits).items():
        theirs = rename(key, table, to_ours=False)
        assert theirs is not None, f"the {arch} table has no entry for our key {key}"
        layout[theirs] = shape
    return layout


def _head_shape(state_dict: dict[str, Tensor], arch: str, to_ours: bool) -> tuple[int, bool]:
    """(number of classes, has auxiliary head) as far as the source's keys tell; else (1000, True)."""
    head = MODEL_INFO[arch].heads[0] + ".weight"  # in our naming
    key = rename(head, TABLES[arch], to_ours=False) if to_ours else head
    weight = state_dict.get(key)
    num_classes = weight.shape[0] if isinstance(weight, Tensor) and weight.dim() == 2 else 1000
    aux = any(k.startswith("AuxLogits.") for k in state_dict) if arch == "inception_v3" else True
    return num_classes, aux


def looks_like(state_dict: dict[str, Tensor], *, torchvision_names: bool) -> str | None:
    """The architecture whose key set is closest to the state dict's (Jaccard), if any is close."""
    keys = set(state_dict)
    best, best_score = None, 0.0
    for arch in TABLES:
        layout = torchvision_layout(arch) if torchvision_names else our_layout(arch)
        candidate = {k for k in layout if not k.startswith("AuxLogits.")}
        score = len(keys & candidate) / len(keys | candidate)
        if score > best_score:
            best, best_score = arch, score
    return best if best_score >= 0.5 else None


def _convert(state_dict: dict[str, Tensor], arch: str, *, to_ours: bool) -> dict[str, Tensor]:
    if arch not in TABLES:
        raise ConversionError(f"unknown architecture {arch!r}; choose one of: {', '.join(TABLES)}")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ConversionError(f"not a state dict: these entries are not tensors: {not_tensors[:5]}")
    num_classes, aux = _head_shape(state_dict, arch, to_ours)
    expected = our_layout(arch, num_classes, aux) if to_ours else torchvision_layout(arch, num_classes, aux)
    table = TABLES[arch]
    out: dict[str, Tensor] = {}
    unexpected, wrong_shape = [], []
    for key, tensor in state_dict.items():
        new = rename(key, table, to_ours=to_ours)
        if new is None or new not in expected:
            unexpected.append(key)
        elif tensor.shape != expected[new]:
            wrong_shape.append(f"{key}: {tuple(tensor.shape)}, expected {tuple(expected[new])}")
        else:
            out[new] = tensor
    for key in expected:
        # BN's batch counter appeared in torch 0.4.1; files saved before it (some of torchvision's
        # own) lack it. It only matters for momentum=None, which no model here uses.
        if key.endswith("num_batches_tracked") and key not in out and not wrong_shape:
            out[key] = torch.tensor(0, dtype=torch.long)
    # Named as the source names them, so the user can look for them in their file.
    missing = [rename(k, table, to_ours=not to_ours) or k for k in expected if k not in out]
    if unexpected or missing or wrong_shape:
        side = "torchvision's" if to_ours else "our"
        lines = [f"these weights do not fit {side} {arch} (key names as in {side} model):"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {title} ({len(keys)}): {shown}")
        guess = looks_like(state_dict, torchvision_names=to_ours)
        if guess is not None and guess != arch:
            lines.append(f"  they look like {guess} weights")
        raise ConversionError("\n".join(lines))
    named = {rename(key, table, to_ours=not to_ours) or key: t for key, t in out.items()}  # in the source's names
    check_tensors(named, f"these {arch} weights", ConversionError)
    return out


def from_torchvision(state_dict: dict[str, Tensor], arch: str) -> dict[str, Tensor]:
    """torchvision's state dict of `arch` -> ours. Every key must be used and every target filled."""
    return _convert(state_dict, arch, to_ours=True)


def to_torchvision(state_dict: dict[str, Tensor], arch: str) -> dict[str, Tensor]:
    """Our state dict of `arch` -> torchvision's, so that models trained here can be used there."""
    return _convert(state_dict, arch, to_ours=False)
