"""Regenerate docs/tutorial.md and its figures (docs/tutorial/) from the live code and the committed
results: every shape, count and number in the tutorial is printed by the model or read from
docs/results/, never typed. Runs in under a minute on the CPU.

    python experiments/make_tutorial.py
"""

import inspect
import json
import math
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from resnet_scratch import build
from resnet_scratch.data import default_root
from resnet_scratch.data.folder import decode
from resnet_scratch.data.transforms import crop_boxes
from resnet_scratch.experiment_pages import results_table, table_columns, unfinished
from resnet_scratch.explain import stage_grad_norms
from resnet_scratch.files import atomic_write_text
from resnet_scratch.models import MODEL_INFO
from resnet_scratch.models.resnet import RESNET_SPECS, BasicBlock, Bottleneck, ZeroPadShortcut
from resnet_scratch.report import new_figure, save_figure
from resnet_scratch.sanity import (
    chance_loss,
    generated_batch,
    identity_blocks,
    initial_loss,
    overfit_one_batch,
    passthrough_error,
    silence_residual_branches,
)
from resnet_scratch.summary import count_macs, summarize

DOCS = Path(__file__).resolve().parent.parent / "docs"
ROOT = Path(__file__).resolve().parent.parent


def compact(module: torch.nn.Module) -> str:
    """A one-line description of a layer: Conv2d(256, 128, 1x1, stride 2), BatchNorm2d(128), or a chain."""
    if isinstance(module, torch.nn.Sequential):
        return " + ".join(compact(m) for m in module)
    if isinstance(module, torch.nn.Conv2d):
        k, s = module.kernel_size, module.stride[0]
        return f"Conv2d({module.in_channels}, {module.out_channels}, {k[0]}x{k[1]}" + (
            f", stride {s})" if s > 1 else ")"
        )
    if isinstance(module, torch.nn.BatchNorm2d):
        return f"BatchNorm2d({module.num_features})"
    if isinstance(module, ZeroPadShortcut):
        return f"keep every {module.stride}nd pixel, pad {module.extra_channels} zero channels"
    return type(module).__name__


def params(module: torch.nn.Module | None) -> int:
    """Parameters of a module (0 for None, the identity)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def walkthrough(block: torch.nn.Module, x: torch.Tensor, where: str) -> list[str]:
    """The shape and parameters after every operation of a live block, as a markdown table."""
    steps: list[tuple[str, str, tuple[int, ...], int]] = [("x", f"input ({where})", tuple(x.shape), 0)]
    handles = []
    for name, module in block.named_children():
        if name == "relu":
            continue
        handles.append(
            module.register_forward_hook(
                lambda m, i, o, name=name: steps.append((name, compact(m), tuple(o.shape), params(m)))
            )
        )
    with torch.no_grad():
        out = block(x)
    for h in handles:
        h.remove()
    steps.append(("out", "relu(F(x) + shortcut(x))", tuple(out.shape), 0))
    table = ["| step | operation | output (N x C x H x W) | parameters |", "|---|---|---|---:|"]
    for name, op, shape, count in steps:
        table.append(f"| `{name}` | {op} | {' x '.join(map(str, shape))} | {count:,} |")
    shortcut = "the identity" if block.shortcut is None else compact(block.shortcut)
    table.append(f"| | **block total** (shortcut: {shortcut}) | | **{params(block):,}** |")
    return table


def draw_block(ax, layers: list[str], shortcut: str, title: str) -> None:
    """A block as the paper draws it (Figures 2 and 5): the branch F top to bottom, the shortcut around
    it on the right, the addition and the ReLU at the bottom."""
    height = 2.2 + 1.2 * len(layers)
    ax.set(xlim=(0, 10), ylim=(-0.4, height), title=title)
    ax.axis("off")
    top = height - 0.6
    ax.text(3.0, top + 0.1, "x", ha="center", va="center", fontsize=12)
    y = top - 0.3
    for layer in layers:
        ax.add_patch(FancyArrowPatch((3.0, y), (3.0, y - 0.35), arrowstyle="->", mutation_scale=10))
        y -= 1.2
        ax.add_patch(FancyBboxPatch((1.2, y), 3.6, 0.8, boxstyle="round,pad=0.06", fc="#dbe8f5", ec="#35608a"))
        ax.text(3.0, y + 0.4, layer, ha="center", va="center", fontsize=8.5)
    ax.text(0.55, (top + y) / 2, "F(x)", ha="center", va="center", fontsize=10, rotation=90, color="#35608a")
    ax.add_patch(FancyArrowPatch((3.0, y), (3.0, 0.95), arrowstyle="->", mutation_scale=10))
    ax.text(3.0, 0.7, "+", ha="center", va="center", fontsize=12, bbox={"boxstyle": "circle", "fc": "white"})
    ax.add_patch(FancyArrowPatch((3.3, top + 0.1), (5.7, top + 0.1), arrowstyle="-", color="#b5462f"))
    ax.add_patch(FancyArrowPatch((5.7, top + 0.1), (5.7, 0.7), arrowstyle="-", color="#b5462f"))
    ax.add_patch(FancyArrowPatch((5.7, 0.7), (3.35, 0.7), arrowstyle="->", mutation_scale=10, color="#b5462f"))
    ax.text(5.95, (top + 0.7) / 2, shortcut, ha="left", va="center", fontsize=8, color="#b5462f")
    ax.add_patch(FancyArrowPatch((3.0, 0.42), (3.0, -0.25), arrowstyle="->", mutation_scale=10))
    ax.text(3.3, -0.05, "relu", fontsize=8)


def plot_blocks(path: Path) -> Path:
    """The basic block and the bottleneck, with their shortcuts."""
    fig = new_figure(11, 5.4)
    left, right = fig.subplots(1, 2)
    shortcut = "shortcut: x itself,\nor where the shape\nchanges: a 1x1 conv\n+ BN (option B) or\nzero-padding (A)"
    draw_block(left, ["3x3 conv, 64", "BN, relu", "3x3 conv, 64", "BN"], shortcut, "Basic block (ResNet-18/34)")
    draw_block(
        right,
        ["1x1 conv, 64", "BN, relu", "3x3 conv, 64", "BN, relu", "1x1 conv, 256", "BN"],
        shortcut,
        "Bottleneck (ResNet-50/101/152)",
    )
    fig.suptitle(
        "relu(F(x) + x): the branch F learns what to add to x\n(not drawn: option C, a projection on every shortcut)",
        fontsize=10,
    )
    return save_figure(fig, path, dpi=100)


def a_slice() -> tuple[np.ndarray, str]:
    """A brain slice to draw on, and what it is: one Testing image of the dataset where it is present,
    else a generated ellipse (the figure is about the boxes)."""
    root = default_root()
    files = sorted((root / "Testing" / "glioma").glob("*.jpg")) if (root / "Testing").is_dir() else []
    if files:
        return decode(files[0]), f"the Testing slice glioma/{files[0].name}"
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:224, :224]
    head = (((yy - 112) / 95) ** 2 + ((xx - 112) / 80) ** 2 < 1) * (120 + 40 * g.random((224, 224)))
    return np.repeat(head[:, :, None], 3, axis=2).astype(np.uint8), "a generated stand-in for a slice"


def plot_crops(path: Path, scale_min: float) -> Path:
    """RandomResizedCrop boxes on a slice: torchvision's default smallest area (8%) against the recipe's."""
    image, what = a_slice()
    h, w = image.shape[:2]
    fig = new_figure(9, 4.8)
    axes = fig.subplots(1, 2)
    for ax, low in zip(axes, (0.08, scale_min)):
        ax.imshow(image)
        boxes = crop_boxes(12, h, w, scale=(low, 1.0), generator=torch.Generator().manual_seed(0))
        for top, left, bh, bw in boxes.tolist():
            ax.add_patch(Rectangle((left, top), bw, bh, fill=False, linewidth=1.0, color="yellow"))
        many = crop_boxes(10_000, h, w, scale=(low, 1.0), generator=torch.Generator().manual_seed(1))
        small = (many[:, 2] * many[:, 3] < 0.2 * h * w).float().mean()
        ax.set(title=f"scale ({low}, 1): {100 * small:.0f}% of 10,000 drawn crops\ncover less than 20% of the slice")
        ax.axis("off")
    fig.suptitle(
        f"12 RandomResizedCrop boxes on {what}\n(each box is resized to the input size in training)", fontsize=10
    )
    return save_figure(fig, path, dpi=100)


def schedule(kind: str, lr: float, epochs: int, steps: int, step_size: int = 7, gamma: float = 0.1) -> list[float]:
    """The learning rate at every batch of a recipe's schedule."""
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if kind == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if kind == "onecycle":
                sched.step()
        if kind == "step":
            sched.step()
    return lrs


def plot_schedules(path: Path, recipe: dict, steps: int) -> Path:
    """The two schedules the package uses: the defaults (torchvision's tutorial, StepLR) and the CPU
    recipe's one-cycle, on one log scale."""
    fig = new_figure(11, 3.6)
    left, right = fig.subplots(1, 2, sharey=True)
    tutorial = schedule("step", 1e-3, 25, steps)
    left.plot(np.arange(len(tutorial)) / steps, tutorial)
    left.set(
        xlabel="epoch",
        ylabel="learning rate (log)",
        yscale="log",
        title="the defaults (torchvision's tutorial): StepLR,\nlr 1e-3, divided by 10 every 7 epochs, 25 epochs",
    )
    onecycle = schedule("onecycle", recipe["lr"], recipe["epochs"], steps)
    right.plot(np.arange(len(onecycle)) / steps, onecycle, color="C1")
    right.set(
        xlabel="epoch",
        title=f"the CPU recipe: one-cycle, peak lr {recipe['lr']},\n{recipe['epochs']} "
        f"epochs, stepped every batch ({steps} per epoch)",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=100)


def plot_sanity(path: Path, losses: list[float], norms: dict[str, dict[str, float]], lr: float) -> Path:
    """Overfitting one batch, and the gradient reaching each stage at initialisation, plain against residual."""
    fig = new_figure(11, 3.8)
    left, right = fig.subplots(1, 2)
    left.plot(range(1, len(losses) + 1), losses)
    left.axhline(chance_loss(4), color="grey", linestyle=":", label="ln 4")
    left.set(
        xlabel="SGD step",
        ylabel="training loss (log)",
        yscale="log",
        title=f"ResNet-18 on one batch of 8 generated images, lr {lr}",
    )
    left.legend(fontsize=8)
    stages = [s for s in next(iter(norms.values())) if s != "fc"]  # the logits' gradient is another scale
    for k, (label, values) in enumerate(norms.items()):
        right.bar(
            np.arange(len(stages)) + (k - 0.5) * 0.4,
            [values[s] for s in stages],
            0.4,
            label=label,
            hatch="//" if label.startswith("plain") else None,
        )
    right.set_yscale("log")
    right.set_xticks(range(len(stages)), stages)
    right.set(
        ylabel="RMS of dLoss/d(stage output) (log)", title="ResNet-34 at initialisation, 16 generated images, 64 px"
    )
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=100)


def sanity_checks(figures: Path) -> list[str]:
    """The four checks, run live on the generated batch their tests use, with the test that keeps each true."""
    x, y = generated_batch()
    torch.manual_seed(0)
    plain, residual = build("resnet18", num_classes=4, skip=False), build("resnet18", num_classes=4)
    loss_plain, loss_residual = initial_loss(plain, x, y), initial_loss(residual, x, y)
    silence_residual_branches(residual)
    loss_silenced = initial_loss(residual, x, y)
    blocks = [name for name, _ in identity_blocks(residual)]
    passthrough = passthrough_error(residual, torch.relu(x))
    torch.manual_seed(0)
    lr = inspect.signature(overfit_one_batch).parameters["lr"].default
    losses = overfit_one_batch(build("resnet18", num_classes=4), x[:8, :, :32, :32], y[:8], steps=60)
    norms = {}
    for label, skip in (("plain-34", False), ("residual-34", True)):
        torch.manual_seed(0)
        norms[label] = stage_grad_norms(build("resnet34", num_classes=4, skip=skip), x, y)
    plot_sanity(figures / "sanity.png", losses, norms, lr)
    ratio = {label: v["conv1"] / v["conv5_x"] for label, v in norms.items()}
    gap = {name: abs(loss - chance_loss(4)) for name, loss in (("plain", loss_plain), ("residual", loss_residual))}
    further = (
        "The residual network strays further from ln 4: every block adds its branch to the stream, so the "
        "features, and the logits, start larger. "
        if gap["residual"] > gap["plain"]
        else "Here the plain network strays further from ln 4. "
    )
    shortcut_effect = (
        f"with shortcuts it grows {ratio['plain-34'] / ratio['residual-34']:.3g} times less"
        if ratio["residual-34"] < ratio["plain-34"]
        else "with shortcuts it grows no less, on this batch"
    )
    return [
        "Four checks to run on any new network before spending hours training it. Each runs here on a generated "
        "batch (16 images of random pixels at 64 px, random labels: `sanity.generated_batch`) and is kept true by "
        "a test in `tests/test_sanity.py` on the same batch; the functions are in `resnet_scratch/sanity.py`.",
        "",
        f"1. **The loss at initialisation is about ln 4 = {chance_loss(4):.3f}.** A model that knows nothing "
        f"spreads its probability evenly over the four classes. Measured: plain ResNet-18 {loss_plain:.3f}, "
        f"residual ResNet-18 {loss_residual:.3f}, the residual one with its branches silenced (check 3) "
        f"{loss_silenced:.3f}. {further}"
        "torchvision's `zero_init_residual` "
        "zeroes each branch's last BatchNorm weight (its bias is zero already), so that every block with an "
        "identity shortcut starts as the identity. A loss far above ln 4 means exploding logits; far below, the "
        "label is leaking into the input. (`pytest tests/test_sanity.py -k initialisation`)",
        f"2. **A network overfits one batch.** ResNet-18 on 8 of these images at 32 px, SGD at lr {lr} with "
        f"momentum: loss {losses[0]:.2f} at the first step, {losses[-1]:.4f} after {len(losses)}. If it cannot "
        "memorise eight images, the gradient does not reach the parameters (a detached tensor) or the optimizer "
        "does not move them, or the labels change from step to step. It says nothing about whether images and "
        "labels are paired correctly: random labels, as here, are memorised as easily. "
        "(`pytest tests/test_sanity.py -k overfits`)",
        f"3. **With the residual branches silenced, identity blocks pass their input through.** Zero the last "
        f"BatchNorm's weight and bias of every block, so F(x) = 0: a block with an identity shortcut outputs "
        f"relu(0 + x) = x, exactly, for the non-negative x a ReLU stage hands on. In ResNet-18 these are "
        f"{', '.join(f'`{b}`' for b in blocks)}: every block except the first of conv3_x, conv4_x and conv5_x, "
        f"whose shortcut changes the shape. Measured on this batch: the largest |output - input| of those "
        f"blocks is {passthrough:g}. It shows that the identity is within a residual block's reach (F = 0), "
        "the premise of section 1's first argument; not that SGD finds it. "
        "(`pytest tests/test_sanity.py -k silenced`)",
        "4. **The gradient reaching each stage, plain against residual, at initialisation.** The root mean square "
        "of dLoss/dx at each stage's output (`explain.stage_grad_norms`), for ResNet-34 in training mode on this "
        f"batch: at conv1 it is {ratio['plain-34']:.3g} times its size at conv5_x without shortcuts, and "
        f"{ratio['residual-34']:.3g} times with them. With BatchNorm the plain network's gradient does not vanish "
        f"(the paper's Section 4.1): it grows towards the input; {shortcut_effect}. "
        "(`pytest tests/test_sanity.py -k gradient`)",
        "",
        "![sanity checks](tutorial/sanity.png)",
        "",
        "*Left: the loss of one batch, step by step. Right: the gradient reaching each stage's output at "
        "initialisation (log scale).*",
        "",
    ]


def experiment_section(docs: Path, name: str, figures: list[str]) -> list[str]:
    """An experiment's table, notes and figures, from docs/results/<name>/results.json."""
    path = docs / "results" / name / "results.json"
    if not path.is_file():
        return [f"(Run `python experiments/{name}.py --scale cpu` to produce this section's results.)", ""]
    record = json.loads(path.read_text())
    lines = [
        f"From `{record['command']}` ({record['seeds']} seeds{unfinished(record)}, {', '.join(record['devices'])}); "
        f"[full results](results/{name}/README.md).",
        "",
    ]
    lines += results_table(record["arms"]) + ["", table_columns(record["arms"]), ""]
    lines += [note + "\n" for note in record["notes"]]
    for file in figures:
        caption = next(f["caption"] for f in record["figures"] if f["file"] == file)
        lines += [f"![{caption}](results/{name}/{file})", "", f"*{caption}*", ""]
    return lines


def frozen_counts() -> str:
    """Trainable parameters of ResNet-50 with 4 classes, fine-tuned whole or with a frozen backbone,
    loaded from a torchvision-layout file written here (random weights: the mechanics are the same)."""
    from weights_convert import to_torchvision

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "resnet50-random.pth"
        torch.save(to_torchvision(build("resnet50").state_dict(), "resnet50"), file)
        counts = {}
        for freeze in (None, "backbone"):
            model = build("resnet50", num_classes=4, weights=file, freeze=freeze)
            counts[freeze] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (
        f'With `freeze=None` all {counts[None]:,} parameters train; with `freeze="backbone"` only the new '
        f"4-class fc does ({counts['backbone']:,}), and the frozen BatchNorm layers keep ImageNet's statistics."
    )


def shortcut_table() -> list[str]:
    """Parameters of ResNet-18, -34 and -50 under the paper's three shortcut options, from live models."""
    lines = [
        "| network | option A (zero-padding) | option B (projection where the shape changes) | "
        "option C (projection everywhere) |",
        "|---|---:|---:|---:|",
    ]
    for depth in (18, 34, 50):
        with torch.device("meta"):
            counts = [params(build(f"resnet{depth}", shortcut=o)) for o in "ABC"]
        lines.append(f"| ResNet-{depth} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    return lines


def bottleneck_arithmetic() -> str:
    """Why the bottleneck: the paper's Figure 5 comparison, and two 3x3 convolutions at 256 channels
    against 1x1-3x3-1x1 through 64."""
    conv = lambda b: sum(m.weight.numel() for m in b.modules() if isinstance(m, torch.nn.Conv2d))  # noqa: E731
    with torch.device("meta"):
        narrow, wide, neck = BasicBlock(64, 64).eval(), BasicBlock(256, 256).eval(), Bottleneck(256, 64).eval()
        macs = {
            name: count_macs_of(block, torch.empty(1, block.conv1.in_channels, 56, 56))
            for name, block in (("narrow", narrow), ("wide", wide), ("neck", neck))
        }
    return (
        f"The paper's Figure 5 sets the two side by side: a basic block at 64 channels ({conv(narrow):,} weights, "
        f"{macs['narrow'] / 1e6:,.0f} M multiply-adds on a 56 x 56 map) and a bottleneck on a stream four times "
        f"wider, 256 channels ({conv(neck):,} weights, {macs['neck'] / 1e6:,.0f} M): about the same cost. Two 3x3 "
        f"convolutions at 256 channels would hold {conv(wide):,} weights and cost {macs['wide'] / 1e6:,.0f} M, "
        f"{conv(wide) / conv(neck):.0f} times the bottleneck's. That is what lets ResNet-50 be deeper than "
        "ResNet-34 at about the same cost (3.8 against 3.6 G multiply-adds in the paper's Table 1)."
    )


def count_macs_of(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of `module` on x (meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


def steps_per_epoch(docs: Path, batch: int) -> int:
    """Batches per epoch of the CPU recipe: its training rows (validation_split.json, seed 0) over the batch."""
    path = docs / "results" / "data" / "validation_split.json"
    rows = (
        json.loads(path.read_text())["seeds"][0]["near duplicates kept together"]["train"] if path.is_file() else 5134
    )
    return math.ceil(rows / batch)


def recipe_result(docs: Path) -> str:
    """ "that reaches X% here" from the external-validity experiment's recipe arm, where it has run."""
    path = docs / "results" / "external_validity" / "results.json"
    if not path.is_file():
        return "(docs/results/external_validity gives its accuracy)"
    arm = next(a for a in json.loads(path.read_text())["arms"] if a["label"] == "recipe")
    n = arm["finished"]
    return (
        f"(Testing {100 * arm['test_accuracy']['mean']:.1f}% full, {100 * arm['leak_free_accuracy']['mean']:.1f}% "
        f"leak-free, {'one seed' if n == 1 else f'mean of {n} seeds'} here)"
    )


def data_facts(docs: Path) -> list[str]:
    """What the splits hide, with the audit's and the validation split's figures (docs/results/data)."""
    audit = docs / "results" / "data" / "audit.json"
    split = docs / "results" / "data" / "validation_split.json"
    copies = "hundreds of"
    if audit.is_file():
        a = json.loads(audit.read_text())
        copies = f"{a['test_images_in_train']} identical and {a['test_images_near_train']} near copies of its"
    moved = ""
    if split.is_file():
        seeds = json.loads(split.read_text())["seeds"]
        before = [s["identical kept together"] for s in seeds]
        moved = (
            f" (before, {min(b['val_with_a_copy_in_train'] for b in before)} to "
            f"{max(b['val_with_a_copy_in_train'] for b in before)} of {before[0]['val']} validation images had a "
            "copy among the training rows; [data.md](data.md))"
        )
    return [
        f"The Testing split holds {copies} Training images ([data.md](data.md)), so every result is reported on "
        "the full split and on the leak-free subset. The validation split, carved from Training, keeps every "
        "group of exact and near duplicates (pHash within the audit's threshold) on one side, so validation "
        f"does not score a copy of a training image, as far as the audit's hashes find copies{moved}. "
        "And the no-tumour class comes from "
        "another collection than the tumour classes: the kind of scan alone predicts much of the label "
        "([data.md](data.md), the shortcut probe), which is why every accuracy here has an external "
        "counterpart ([results.md](results.md)).",
        "",
    ]


def skip_epochs() -> int:
    """The CPU budget of the skip ablation (experiments/ablate_skip.py's EPOCHS)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablate_skip", ROOT / "experiments" / "ablate_skip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EPOCHS["cpu"]


def main(docs: Path = DOCS) -> Path:
    """Write docs/tutorial.md and docs/tutorial/*.png (reading docs/results/); returns the page."""
    from resnet_scratch.config import read_toml

    figures = docs / "tutorial"
    figures.mkdir(parents=True, exist_ok=True)
    recipe = read_toml(ROOT / "experiments" / "configs" / "main_cpu.toml")
    plot_blocks(figures / "blocks.png")
    plot_crops(figures / "crops.png", recipe["crop_scale_min"])
    plot_schedules(figures / "schedules.png", recipe, steps=steps_per_epoch(docs, recipe["batch_size"]))
    table = ", ".join(f"{depth}: {block.__name__} x {counts}" for depth, (block, counts) in RESNET_SPECS.items())
    with torch.device("meta"):
        v1 = count_macs(build("resnet50", stride_on="1x1").eval(), 224)[0]
        v15 = count_macs(build("resnet50").eval(), 224)[0]
    torch.manual_seed(0)
    first_basic, identity_basic = BasicBlock(64, 128, stride=2).eval(), BasicBlock(128, 128).eval()
    first_neck = Bottleneck(256, 128, stride=2).eval()
    lines = (
        [
            "# Tutorial: residual networks on brain MRI, from one block to a trained model",
            "",
            "Generated by `python experiments/make_tutorial.py` from the live code and docs/results/; "
            'do not edit by hand. Paper: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", '
            'CVPR 2016; its follow-up: "Identity Mappings in Deep Residual Networks", ECCV 2016.',
            "",
            "## 1. Why a shortcut helps",
            "",
            "A residual block computes relu(F(x) + x): a few layers F, and a shortcut that adds the block's input "
            "to their output. Two arguments say why this makes deep networks trainable.",
            "",
            "**A deeper network can at least copy a shallower one.** Take a trained 18-layer network and add 16 "
            "layers. If the new layers computed the identity, the 34-layer network would be exactly as good, so a "
            "deeper network should never train worse. Yet plain deep networks do (the paper's Figure 4: the plain "
            "34-layer network has higher *training* error than the plain 18-layer one), and the paper conjectures "
            "that solvers have difficulty approximating an identity mapping by a stack of non-linear layers. In a "
            "residual block the identity is F = 0, which only needs the branch's last BatchNorm weight and bias at "
            "zero (section 5 runs this: silence every branch, and every block with an identity shortcut passes its "
            "input through). The blocks only have to learn what to add.",
            "",
            "**The gradient has a direct path back.** Take identity shortcuts and nothing after the addition (the "
            "follow-up paper's pre-activation form, BN-ReLU-conv inside the branch; this package builds the "
            "original form, below). Unit l maps x_l to x_{l+1} = x_l + F(x_l), so any deeper unit L sees "
            "x_L = x_l + Σ_{i=l}^{L-1} F(x_i), and the chain rule gives",
            "",
            "    ∂Loss/∂x_l = ∂Loss/∂x_L · (1 + ∂/∂x_l Σ_{i=l}^{L-1} F(x_i))",
            "",
            "The 1 carries the gradient of any deeper unit to any shallower one directly: in the follow-up paper's "
            "words, it is unlikely to be cancelled out, since the derivative term would have to be exactly -1 "
            "for every sample of a mini-batch. In a plain "
            "network the gradient is a product of one factor per layer, which can vanish or explode with depth; "
            "with BatchNorm at initialisation the plain network's grows towards the input (section 5, check 4). "
            "The equation holds within a stage: where the shape changes, a projection or zero-padding shortcut "
            "stands in for the identity. And in the original block here (and in torchvision) a ReLU follows the "
            "addition, so the path is the identity only where the sum is positive: the argument holds approximately.",
            "",
            "## 2. The basic block (ResNet-18 and -34)",
            "",
            "![the two blocks](tutorial/blocks.png)",
            "",
            "```python",
            textwrap.dedent(inspect.getsource(BasicBlock.forward)).rstrip(),
            "```",
            "",
            "A live `BasicBlock(64, 128, stride=2)`, the first block of ResNet-18's conv3_x, on a 56 x 56 map: the "
            "shape changes (twice the channels, half the size), so its shortcut is a projection (option B):",
            "",
        ]
        + walkthrough(first_basic, torch.randn(1, 64, 56, 56), "conv2_x's output")
        + [
            "",
            "and `BasicBlock(128, 128)`, the second block of conv3_x, whose shortcut is the identity:",
            "",
        ]
        + walkthrough(identity_basic, torch.randn(1, 128, 28, 28), "the first block's output")
        + [
            "",
            "## 3. The bottleneck (ResNet-50, -101 and -152)",
            "",
            "```python",
            textwrap.dedent(inspect.getsource(Bottleneck.forward)).rstrip(),
            "```",
            "",
            bottleneck_arithmetic(),
            "",
            "A live `Bottleneck(256, 128, stride=2)`, the first block of ResNet-50's conv3_x:",
            "",
        ]
        + walkthrough(first_neck, torch.randn(1, 256, 56, 56), "conv2_x's output")
        + [
            "",
            "The shortcut is a projection wherever the shape changes, and only there (option B). In ResNet-50 that "
            "includes conv2_x's first block, where the size stays 56 x 56 but the channels grow from 64 to 256: a "
            "change of channels alone needs a projection too.",
            "",
            "**v1 and v1.5.** The paper says only that conv3_1, conv4_1 and conv5_1 downsample with stride 2; its "
            "authors' released models (v1) put that stride on the bottleneck's first 1x1 convolution, which "
            "discards three quarters of the positions before any 3x3 sees them. torchvision's ResNet-50 (v1.5, "
            f"and its ImageNet weights) moves it to the 3x3: {v15 / 1e9:.2f} G multiply-adds at 224 px against "
            f"{v1 / 1e9:.2f} G for v1, for about half a point of ImageNet top-1 by NVIDIA's account of v1.5. "
            '`resnet50(stride_on="1x1")` builds v1; the default is v1.5. A basic block has no 1x1, so ResNet-18 '
            "and -34 are the same in both.",
            "",
            "**The shortcut options of the paper's Table 3.** Where the shape changes, the identity cannot be added "
            "as it is. Option A keeps it parameter-free: take every second pixel and pad the new channels with "
            "zeros (`ZeroPadShortcut`); option B uses a 1x1 convolution + BatchNorm there and the identity elsewhere "
            "(torchvision's layout, the default here); option C uses a projection on every shortcut. The paper's "
            "Figure 4 and Table 2 use option A for ResNet-18 and -34; its Table 3 compares the three on ResNet-34 "
            "(ImageNet top-1 error 25.03% A, 24.52% B, 24.19% C, 10-crop), finds the differences small, and uses B "
            "for the bottleneck networks, where option C's extra projections would be costly. The paper built no "
            'ResNet-50 with option A; `build("resnet50", shortcut="A")` extends the idea. `build("resnet34", '
            'shortcut="A")`:',
            "",
            "```python",
            textwrap.dedent(inspect.getsource(ZeroPadShortcut.forward)).rstrip(),
            "```",
            "",
        ]
        + shortcut_table()
        + [
            "",
            "## 4. The paper's layer table, printed from the live model",
            "",
            f"The architecture is data: `RESNET_SPECS` in `resnet_scratch/models/resnet.py` is the paper's Table 1 "
            f"({table}). `python -m resnet_scratch summary resnet50` walks a model on the meta device (no memory, no "
            "compute) and prints every stage's output shape, parameters and multiply-adds beside the paper's figures:",
            "",
            "```",
            summarize("resnet50"),
            "```",
            "",
            "## 5. Sanity checks before training",
            "",
        ]
        + sanity_checks(figures)
        + [
            "## 6. What the skip connections change here",
            "",
            "`skip=False` builds the paper's plain network: the same layers, no shortcuts. The paper's Figure 4 has "
            "two halves: the 34-layer plain network trains worse than the 18-layer one (degradation, not "
            "overfitting: its *training* error is higher), and with shortcuts the 34-layer network is the better "
            "one. The experiment below trains both depths, plain and residual (options A and B), on this dataset; "
            "its notes say which half its numbers reproduce.",
            "",
        ]
        + experiment_section(docs, "ablate_skip", ["curves.png", "grad_norms.png"])
        + [
            "## 7. What dropout changes here",
            "",
            "Dropout zeroes a random fraction p of the features in training (and scales the rest by 1/(1-p)), so "
            "no unit can rely on another; it fights overfitting, a gap between training and validation accuracy. "
            "The ResNet paper uses none (BatchNorm regularises); VGG16 uses p = 0.5 in its classifier. A gap can "
            "only be read when both sides are measured alike: here both are scored in eval mode on centre crops "
            "(a running accuracy over the epoch's batches, with dropout on and the weights still moving, would "
            "understate the training side), and the networks train on a small share of the data with no augmentation, "
            "weight decay or label smoothing (ResNet-18 keeps its BatchNorm), a setting chosen to make them "
            "overfit; the notes below say, from the numbers, whether they did and what dropout changed.",
            "",
        ]
        + experiment_section(docs, "ablate_dropout", ["gap.png", "curves.png"])
        + [
            "## 8. The data: crops, the schedule, and what a split can hide",
            "",
            f"RandomResizedCrop's default draws crops down to 8% of the image; on a brain slice a crop that small "
            f"can miss the tumour, so the CPU recipe uses at least {100 * recipe['crop_scale_min']:.0f}% "
            "(`crop_scale_min`; the experiments' presets set their own):",
            "",
            "![crop boxes](tutorial/crops.png)",
            "",
            "The defaults follow torchvision's transfer-learning tutorial (StepLR); the CPU recipe "
            f"{recipe_result(docs)} warms up and anneals every batch (one-cycle). The two have not been compared at "
            "equal epochs and seeds:",
            "",
            "![learning-rate schedules](tutorial/schedules.png)",
            "",
        ]
        + data_facts(docs)
        + [
            "## 9. Fine-tuning from ImageNet",
            "",
            "torchvision's ImageNet weights are converted into our modules by explicit name tables "
            "(`weights_convert/tables.py`): no pickle, every tensor checked for shape, logits equal to torchvision's.",
            "",
            "```",
            "# convert once (or let build() find the file in torch's hub cache or $RESNET_SCRATCH_WEIGHTS)",
            f"python -m weights_convert --arch resnet50 --src {MODEL_INFO['resnet50'].torchvision_file} "
            "--dst resnet50.safetensors",
            "# fine-tune everything, or only the new head",
            "python -m resnet_scratch train --model resnet50 --weights imagenet --lr 0.01 --epochs 10",
            "python -m resnet_scratch train --model resnet50 --weights imagenet --freeze backbone --lr 0.01",
            "```",
            "",
            "```python",
            "from resnet_scratch import build",
            "",  # as ruff formats it: make test checks the code blocks of the docs too
            'model = build("resnet50", num_classes=4, weights="imagenet", freeze="backbone")',
            "```",
            "",
            frozen_counts(),
            "",
            "## 10. Exercises",
            "",
            "Each comes with the command that checks it.",
            "",
            "1. From section 2's tables, work out how many parameters option A saves against B in ResNet-34 (which "
            "blocks have a projection, and what does each hold?), and how many option C adds; then check: "
            '`python -c "from resnet_scratch import build; print([sum(p.numel() for p in '
            "build('resnet34', shortcut=o).parameters()) for o in 'ABC'])\"`.",
            "2. Print the shapes of ResNet-50 at 128 px and say at which stage the map is 4 x 4: "
            "`python -m resnet_scratch summary resnet50 --size 128`.",
            "3. Which blocks of ResNet-50 still change their input when every branch is silenced, and why? Check: "
            '`python -c "from resnet_scratch.models import build; from resnet_scratch.sanity import identity_blocks; '
            "m = build('resnet50'); names = [n for n, _ in identity_blocks(m)]; "
            "print([f'{s}.{i}' for s in ('conv2_x','conv3_x','conv4_x','conv5_x') "
            "for i in range(len(getattr(m, s))) if f'{s}.{i}' not in names])\"`.",
            "4. Does degradation survive a longer budget? Train all six networks of section 6 for twice its epochs "
            "on one seed and compare plain-18 with plain-34 again: "
            f"`python experiments/ablate_skip.py --scale cpu --epochs {2 * skip_epochs()} --seeds 1 --out /tmp/skip` "
            "(six runs: about 45 minutes on the 2-core CPU, estimated from the section's own runs).",
            "5. Show that a running training accuracy over augmented batches understates how well a network fits "
            "its training rows, and say why (random crops, BatchNorm in training mode, weights still moving during "
            "the epoch): `python -c \"import json; r = json.load(open('docs/results/ablate_skip/results.json')); "
            "[print(a['label'], round(100 * a['train_accuracy']['mean'], 1), "
            "round(100 * a['train_eval_accuracy']['mean'], 1)) for a in r['arms']]\"` prints both for each network "
            "of section 6.",
            "6. Make the overfit-one-batch check fail on purpose, with labels that change every step: "
            '`python -c "import torch; from resnet_scratch.models import build; from resnet_scratch.sanity import '
            "generated_batch; x, y = generated_batch(8, 32); m = build('resnet18', num_classes=4); "
            "o = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9); "
            "[(o.zero_grad(), torch.nn.functional.cross_entropy(m(x), torch.randint(0, 4, (8,))).backward(), o.step()) "
            'for _ in range(60)]; print(float(torch.nn.functional.cross_entropy(m(x), y)))"` prints a loss near '
            "or above ln 4 where check 2 reached almost zero.",
            "",
        ]
    )
    page = docs / "tutorial.md"
    atomic_write_text(page, "\n".join(lines))
    print(f"wrote {page} and {figures}/")
    return page


if __name__ == "__main__":
    main()
