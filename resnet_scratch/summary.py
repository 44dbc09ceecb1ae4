"""Layer tables: output shape, parameters and multiply-adds of every top-level stage of a model.

Everything runs on the meta device: shapes and operation counts without allocating or computing a
single activation, so even VGG16 and ResNet-152 are summarised in well under a second.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import MODEL_INFO, build


@dataclass(frozen=True)
class Row:
    """One top-level stage: its name, output shape (C, H, W or features), parameters, MACs."""

    name: str
    shape: tuple[int, ...]
    params: int
    macs: int


def count_macs(model: nn.Module, input_size: int) -> tuple[int, dict[str, int]]:
    """Multiply-adds of one forward pass of a 1-image batch: the total and per top-level child.

    The model must live on the meta device. A multiply-add is half of what torch's flop counter
    reports (it counts one multiply and one add per MAC), and convolutions and linear layers are
    all it counts, as the papers do.
    """
    x = torch.empty(1, 3, input_size, input_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x)
    root = type(model).__name__
    per_module = counter.get_flop_counts()
    per_child = {name: sum(per_module.get(f"{root}.{name}", {}).values()) // 2 for name, _ in model.named_children()}
    return counter.get_total_flops() // 2, per_child


def layer_table(model: nn.Module, input_size: int) -> list[Row]:
    """One Row per top-level child that runs in eval mode, in execution order."""
    model = model.eval()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):  # a forward hook must return None, or it replaces the output
        def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(out.shape[1:]))

        return hook

    hooks = [child.register_forward_hook(record(name)) for name, child in model.named_children()]
    try:
        _, macs = count_macs(model, input_size)
    finally:
        for h in hooks:
            h.remove()
    children = dict(model.named_children())
    return [
        Row(name, shape, sum(p.numel() for p in children[name].parameters()), macs[name])
        for name, shape in shapes.items()
    ]


def summarize(name: str, input_size: int | None = None, num_classes: int = 1000) -> str:
    """The printable layer table of model `name`, with the paper's figures beside ResNet rows."""
    info = MODEL_INFO[name]
    size = input_size or info.input_size
    with torch.device("meta"):
        model = build(name, num_classes=num_classes)
    rows = layer_table(model, size)
    paper = info.paper_rows if size == info.input_size else None
    lines = [f"{name} at {size}x{size}, {num_classes} classes"]
    header = f"  {'stage':<14} {'output (C x H x W)':<20} {'params':>13} {'MMACs':>10}"
    if info.paper_rows is not None:
        header += "   paper (Table 1)"
    lines.append(header)
    for row in rows:
        line = f"  {row.name:<14} {' x '.join(map(str, row.shape)):<20} {row.params:>13,} {row.macs / 1e6:>10,.1f}"
        if paper is not None and row.name in paper:
            line += "   " + " x ".join(map(str, paper[row.name]))
        lines.append(line)
    params = sum(p.numel() for p in model.parameters())
    total = sum(r.macs for r in rows)
    lines.append(f"  {'total':<14} {'':<20} {params:>13,} {total / 1e6:>10,.1f}")
    if info.paper_gmacs is not None and size == info.input_size:
        with torch.device("meta"):
            v1 = build(name, num_classes=num_classes, stride_on="1x1")
        v1_macs, _ = count_macs(v1.eval(), size)
        if v1_macs == total:  # basic blocks have no 1x1: v1 and v1.5 are the same network
            built = f"  multiply-adds: {total / 1e9:.2f} G (v1 and v1.5 are the same network); "
        else:
            built = f"  multiply-adds: {total / 1e9:.2f} G as built (v1.5, stride on the 3x3); "
            built += f"{v1_macs / 1e9:.2f} G in the paper's v1 layout; "
        lines.append(built + f"paper's FLOPs row: {info.paper_gmacs} G")
    skipped = [n for n, child in model.named_children() if n not in {r.name for r in rows}]
    for n in skipped:  # InceptionV3's AuxLogits: it runs in training mode only
        aux_params = sum(p.numel() for p in getattr(model, n).parameters())
        lines.append(f"  ({n}, {aux_params:,} params, runs in training only: in the total, not the rows)")
    return "\n".join(lines)
