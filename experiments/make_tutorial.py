"""Regenerate docs/tutorial.md and its figures (docs/tutorial/) from the live code and the committed
results: every shape, count and number in the tutorial is printed by the model or read from
docs/results/, never typed. Runs in under a minute on the CPU.

    python experiments/make_tutorial.py
"""

import inspect
import json
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
from resnet_scratch.experiment import results_table
from resnet_scratch.explain import stage_grad_norms
from resnet_scratch.files import atomic_write_text
from resnet_scratch.models import MODEL_INFO
from resnet_scratch.models.resnet import RESNET_SPECS, BasicBlock, Bottleneck, ZeroPadShortcut
from resnet_scratch.report import new_figure, save_figure
from resnet_scratch.sanity import (
    chance_loss,
    identity_blocks,
    initial_loss,
    overfit_one_batch,
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
    """A block as the paper draws it (Figure 2, 5): the branch F top to bottom, the shortcut beside it,
    the addition and the ReLU at the bottom."""
    ax.set(xlim=(0, 10), ylim=(0, 2 + 1.4 * len(layers)), title=title)
    ax.axis("off")
    top = 1.4 * len(layers) + 1.2
    ax.text(3.5, top + 0.45, "x", ha="center", fontsize=11)
    y = top
    for layer in layers:
        y -= 1.4
        ax.add_patch(FancyBboxPatch((1.2, y), 4.6, 0.8, boxstyle="round,pad=0.08", fc="#dbe8f5", ec="#35608a"))
        ax.text(3.5, y + 0.4, layer, ha="center", va="center", fontsize=8.5)
        ax.add_patch(FancyArrowPatch((3.5, y + 1.4 - 0.12), (3.5, y + 0.88), arrowstyle="->", mutation_scale=10))
    ax.add_patch(plt_circle(3.5, 0.9))
    ax.text(3.5, 0.9, "+", ha="center", va="center", fontsize=12)
    ax.add_patch(FancyArrowPatch((3.5, y - 0.1), (3.5, 1.2), arrowstyle="->", mutation_scale=10))
    ax.add_patch(
        FancyArrowPatch(
            (3.9, top + 0.3),
            (3.85, 1.0),
            connectionstyle="arc3,rad=-0.55",
            arrowstyle="->",
            mutation_scale=10,
            color="#b5462f",
        )
    )
    ax.text(8.2, top / 2 + 0.5, shortcut, ha="center", va="center", fontsize=8, color="#b5462f", wrap=True)
    ax.add_patch(FancyArrowPatch((3.5, 0.6), (3.5, 0.05), arrowstyle="->", mutation_scale=10))
    ax.text(4.0, 0.15, "relu", fontsize=8)


def plt_circle(x: float, y: float):
    """The circle around the addition."""
    from matplotlib.patches import Circle

    return Circle((x, y), 0.3, fc="white", ec="black")


def plot_blocks(path: Path) -> Path:
    """The basic block and the bottleneck, with their shortcuts."""
    fig = new_figure(10, 5.2)
    left, right = fig.subplots(1, 2)
    draw_block(
        left,
        ["3x3 conv, 64", "BN, relu", "3x3 conv, 64", "BN"],
        "identity x\n(option B/A: projection\nor zero-pad where\nthe shape changes)",
        "Basic block (ResNet-18/34)",
    )
    draw_block(
        right,
        ["1x1 conv, 64", "BN, relu", "3x3 conv, 64", "BN, relu", "1x1 conv, 256", "BN"],
        "identity x\n(1x1 conv + BN where\nthe shape changes)",
        "Bottleneck (ResNet-50/101/152)",
    )
    fig.suptitle("relu(F(x) + x): the branch F learns what to add to x", fontsize=10)
    return save_figure(fig, path, dpi=100)


def a_slice() -> np.ndarray:
    """A brain slice to draw on: one Testing image of the dataset where it is present, else a smooth
    generated picture (the figure is about the boxes)."""
    root = default_root()
    files = sorted((root / "Testing" / "glioma").glob("*.jpg")) if (root / "Testing").is_dir() else []
    if files:
        return decode(files[0])
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:224, :224]
    head = (((yy - 112) / 95) ** 2 + ((xx - 112) / 80) ** 2 < 1) * (120 + 40 * g.random((224, 224)))
    return np.repeat(head[:, :, None], 3, axis=2).astype(np.uint8)


def plot_crops(path: Path, scale_min: float) -> Path:
    """RandomResizedCrop boxes on a slice: torchvision's default smallest area (8%) against the recipes'."""
    image = a_slice()
    h, w = image.shape[:2]
    fig = new_figure(9, 4.6)
    axes = fig.subplots(1, 2)
    for ax, low in zip(axes, (0.08, scale_min)):
        ax.imshow(image)
        boxes = crop_boxes(40, h, w, scale=(low, 1.0), generator=torch.Generator().manual_seed(0))
        for top, left, bh, bw in boxes.tolist():
            ax.add_patch(Rectangle((left, top), bw, bh, fill=False, alpha=0.6, linewidth=0.8, color="yellow"))
        small = (boxes[:, 2] * boxes[:, 3] < 0.2 * h * w).float().mean()
        ax.set(title=f"scale ({low}, 1): {100 * small:.0f}% of crops < 20% of the slice")
        ax.axis("off")
    fig.suptitle("40 RandomResizedCrop boxes on one Testing slice, each resized to the input size in training")
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
    """The two schedules the package uses: the tutorial's StepLR defaults and the CPU recipe's one-cycle."""
    fig = new_figure(11, 3.4)
    left, right = fig.subplots(1, 2)
    tutorial = schedule("step", 1e-3, 25, steps)
    left.plot(np.arange(len(tutorial)) / steps, tutorial)
    left.set(
        xlabel="epoch",
        ylabel="learning rate",
        yscale="log",
        title="the defaults (torchvision's tutorial): StepLR, lr 1e-3,\n/10 every 7 epochs, 25 epochs",
    )
    onecycle = schedule("onecycle", recipe["lr"], recipe["epochs"], steps)
    right.plot(np.arange(len(onecycle)) / steps, onecycle, color="C1")
    right.set(
        xlabel="epoch",
        title=f"the CPU recipe: one-cycle, peak lr {recipe['lr']}, {recipe['epochs']} epochs,\nstepped every batch",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=100)


def plot_sanity(path: Path, losses: list[float], norms: dict[str, dict[str, float]]) -> Path:
    """Overfitting one batch, and the gradient norm per stage at initialisation, plain against residual."""
    fig = new_figure(11, 3.6)
    left, right = fig.subplots(1, 2)
    left.plot(range(1, len(losses) + 1), losses)
    left.axhline(chance_loss(4), color="grey", linestyle=":", label="ln 4")
    left.set(xlabel="SGD step", ylabel="training loss", yscale="log", title="ResNet-18 on one batch of 8 images")
    left.legend(fontsize=8)
    stages = list(next(iter(norms.values())))
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
    right.set(ylabel="||dL/dθ_stage||", title="ResNet-34 at initialisation, one batch")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=100)


def sanity_checks(figures: Path) -> list[str]:
    """The four checks, run live on generated batches, with the test that keeps each true."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 64, 64, generator=g), torch.randint(0, 4, (16,), generator=g)
    torch.manual_seed(0)
    plain, residual = build("resnet18", num_classes=4, skip=False), build("resnet18", num_classes=4)
    loss_plain, loss_residual = initial_loss(plain, x, y), initial_loss(residual, x, y)
    silence_residual_branches(residual)
    loss_silenced = initial_loss(residual, x, y)
    blocks = [name for name, _ in identity_blocks(residual)]
    torch.manual_seed(0)
    losses = overfit_one_batch(build("resnet18", num_classes=4), x[:8, :, :32, :32], y[:8], steps=60, lr=0.01)
    norms = {}
    for label, skip in (("plain-34", False), ("residual-34", True)):
        torch.manual_seed(0)
        norms[label] = stage_grad_norms(build("resnet34", num_classes=4, skip=skip), x, y)
    plot_sanity(figures / "sanity.png", losses, norms)
    ratio = {label: v["conv1"] / v["fc"] for label, v in norms.items()}
    return [
        "Four checks to run on any new network before spending hours training it. Each is computed here on a "
        "generated batch (16 images of random pixels, random labels) and kept true by a test in "
        "`tests/test_sanity.py`; the functions are in `resnet_scratch/sanity.py`.",
        "",
        f"1. **The loss at initialisation is about ln 4 = {chance_loss(4):.3f}.** A model that knows nothing "
        f"spreads its probability evenly over the four classes. Measured: plain ResNet-18 {loss_plain:.3f}, "
        f"residual ResNet-18 {loss_residual:.3f}, the residual one with its branches silenced (below) "
        f"{loss_silenced:.3f}. The residual network starts further from ln 4 because every block adds its "
        "branch to the stream, so the features, and the logits, start larger; torchvision's `zero_init_residual` "
        "sets each branch's last BatchNorm to zero to start exactly at the identity. A loss far above ln 4 means "
        "exploding logits; far below, the label is leaking into the input. "
        "(`pytest tests/test_sanity.py -k initialisation`)",
        f"2. **A network overfits one batch.** ResNet-18 on 8 images of 32 px, SGD lr 0.01: loss "
        f"{losses[0]:.2f} at the first step, {losses[-1]:.4f} after {len(losses)}. If it cannot memorise eight "
        "images, something between the data and the gradient is broken (labels shuffled apart from images, a "
        "detached tensor, a frozen layer). (`pytest tests/test_sanity.py -k overfits`)",
        f"3. **With the residual branches silenced, identity blocks pass their input through.** Zero the last "
        f"BatchNorm's weight and bias of every block, so F(x) = 0: a block with an identity shortcut outputs "
        f"relu(0 + x) = x, exactly, for the non-negative x a ReLU stage hands on. In ResNet-18 these are "
        f"{', '.join(f'`{b}`' for b in blocks)}: every block except the first of conv3_x, conv4_x and conv5_x, "
        "whose shortcut changes the shape. This is the identity-mapping argument of section 1, run. "
        "(`pytest tests/test_sanity.py -k silenced`)",
        f"4. **Gradient norms per stage, plain against residual, at initialisation.** For ResNet-34 on this batch "
        f"the gradient at conv1 is {ratio['residual-34']:.2g} times the gradient at fc with shortcuts and "
        f"{ratio['plain-34']:.2g} times without. (`pytest tests/test_sanity.py -k gradient`)",
        "",
        "![sanity checks](tutorial/sanity.png)",
        "",
        "*Left: the loss of one batch falls to almost zero. Right: the gradient norm of each stage at "
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
        f"From `{record['command']}` ({record['seeds']} seeds, {', '.join(record['devices'])}); "
        f"[full results](results/{name}/README.md).",
        "",
    ]
    lines += results_table(record["arms"]) + [""]
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
    """Why the bottleneck: two 3x3 convolutions at 256 channels against 1x1-3x3-1x1 through 64."""
    conv = lambda b: sum(m.weight.numel() for m in b.modules() if isinstance(m, torch.nn.Conv2d))  # noqa: E731
    with torch.device("meta"):
        basic, neck = BasicBlock(256, 256).eval(), Bottleneck(256, 64).eval()
        x = torch.empty(1, 256, 56, 56)
        macs_basic = count_macs_of(basic, x)
        macs_neck = count_macs_of(neck, x)
    return (
        f"Two 3x3 convolutions at 256 channels (a basic block that wide) hold {conv(basic):,} weights and "
        f"cost {macs_basic / 1e6:,.0f} M multiply-adds on a 56 x 56 map; the bottleneck that replaces them, "
        f"1x1 down to 64, 3x3 at 64, 1x1 back to 256, holds {conv(neck):,} and costs {macs_neck / 1e6:,.0f} M: "
        f"{conv(basic) / conv(neck):.0f} times fewer. That is what lets ResNet-50 be deeper than ResNet-34 "
        "at about the same cost (3.8 against 3.6 G multiply-adds in the paper's Table 1)."
    )


def count_macs_of(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of `module` on x (meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


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
    recipe = read_toml(ROOT / "experiments" / "configs" / "resnet18_cpu_onecycle.toml")
    plot_blocks(figures / "blocks.png")
    plot_crops(figures / "crops.png", recipe["crop_scale_min"])
    plot_schedules(figures / "schedules.png", recipe, steps=81)
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
            "deeper network should never be worse. Yet plain deep networks do train worse (the paper's Figure 4, "
            "and section 6 below): SGD does not find the identity through a stack of convolutions and ReLUs. In a "
            "residual block the identity is F = 0, all weights at zero (section 5 runs this: silence every branch "
            "and the network passes its input through), and weight decay pulls every weight towards zero. The "
            "blocks only have to learn what to add.",
            "",
            "**The gradient has a direct path back.** With identity shortcuts and nothing after the addition (the "
            "follow-up paper's pre-activation form), block l + 1 outputs x_{l+1} = x_l + F(x_l), so any deeper "
            "block L sees x_L = x_l + Σ_{i=l}^{L-1} F(x_i), and the chain rule gives",
            "",
            "    ∂Loss/∂x_l = ∂Loss/∂x_L · (1 + ∂/∂x_l Σ_{i=l}^{L-1} F(x_i))",
            "",
            "The 1 carries the gradient from any depth to any shallower block unchanged: it cannot vanish through a "
            "product of many small factors, as it can in a plain network where the gradient is such a product. "
            "In the original block here (and in torchvision) a ReLU follows the addition, so the path is the "
            "identity only where the sum is positive; the argument holds approximately.",
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
            "**v1 and v1.5.** The paper (v1) puts the stride 2 of conv3_x ... conv5_x on the bottleneck's first 1x1 "
            "convolution, which discards three quarters of the positions before any 3x3 sees them. torchvision's "
            "ResNet-50 (v1.5, and its ImageNet weights) moves it to the 3x3: "
            f"{v15 / 1e9:.2f} G multiply-adds at 224 px against {v1 / 1e9:.2f} G for v1, for about half a point of "
            'ImageNet top-1. `resnet50(stride_on="1x1")` builds v1; the default is v1.5. A basic block has no 1x1, '
            "so ResNet-18 and -34 are the same in both.",
            "",
            "**The shortcut options of the paper's Table 3.** Where the shape changes, the identity cannot be added "
            "as it is. Option A keeps it parameter-free: take every second pixel and pad the new channels with "
            "zeros (`ZeroPadShortcut`); option B uses a 1x1 convolution + BatchNorm there and the identity elsewhere "
            "(torchvision's layout, the default here); option C uses a projection on every shortcut. The paper "
            'found B slightly better than A and C barely better than B, and kept B. `build("resnet34", '
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
            "(a running accuracy over augmented batches with dropout on would understate the training side), and "
            "the networks train on a small share of the data, long enough to overfit.",
            "",
        ]
        + experiment_section(docs, "ablate_dropout", ["gap.png", "curves.png"])
        + [
            "## 8. The data: crops, the schedule, and what a split can hide",
            "",
            f"RandomResizedCrop's default draws crops down to 8% of the image; on a brain slice that often cuts the "
            f"tumour out, so the CPU recipe uses at least {100 * recipe['crop_scale_min']:.0f}% "
            "(`crop_scale_min`; the experiments' presets set their own):",
            "",
            "![crop boxes](tutorial/crops.png)",
            "",
            "The defaults follow torchvision's transfer-learning tutorial (StepLR); the CPU recipe that reaches 98% "
            "here warms up and anneals every batch (one-cycle). The two have not been compared at equal epochs and "
            "seeds:",
            "",
            "![learning-rate schedules](tutorial/schedules.png)",
            "",
            "The Testing split shares hundreds of images with Training ([data.md](data.md)), so every result is "
            "reported on the full split and on the leak-free subset. The validation split, carved from Training, "
            "keeps every group of exact and near duplicates (pHash within the audit's threshold) on one side, so "
            "validation does not score a near copy of a training image either. And the no-tumour class comes from "
            "another collection than the tumour classes: the kind of scan alone predicts much of the label "
            "([data.md](data.md), the shortcut probe), which is why every accuracy here has an external "
            "counterpart ([results.md](results.md)).",
            "",
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
            'model = build("resnet50", num_classes=4, weights="imagenet", freeze="backbone")',
            "```",
            "",
            frozen_counts(),
            "",
            "## 10. Exercises",
            "",
            "Each comes with the command that checks it.",
            "",
            "1. Count the parameters of ResNet-34 with option A and with option C by hand from the layer table, then "
            'check: `python -c "from resnet_scratch import build; print([sum(p.numel() for p in '
            "build('resnet34', shortcut=o).parameters()) for o in 'AC'])\"`.",
            "2. Print the shapes of ResNet-50 at 128 px and say at which stage the map is 4 x 4: "
            "`python -m resnet_scratch summary resnet50 --size 128`.",
            "3. Silence the residual branches of ResNet-50 and find the blocks that still change their input (and "
            "why): `pytest tests/test_sanity.py -k silenced -v`, then read `identity_blocks` in "
            "`resnet_scratch/sanity.py`.",
            "4. Does degradation survive a longer budget? Train all six networks of section 6 for twice its epochs "
            "on one seed and compare plain-18 with plain-34 again: "
            f"`python experiments/ablate_skip.py --scale cpu --epochs {2 * skip_epochs()} --seeds 1 --out /tmp/skip`.",
            "5. Show that a running training accuracy understates overfitting: in /tmp/drop's README after "
            "`python experiments/ablate_dropout.py --scale cpu --seeds 1 --out /tmp/drop`, compare `train acc` with "
            "`train acc (eval)` for VGG16 p=0.5.",
            "6. Break the overfit-one-batch check on purpose (shuffle the labels every step) and watch it fail: "
            "edit `overfit_one_batch` in a copy, then `pytest tests/test_sanity.py -k overfits`.",
            "",
        ]
    )
    page = docs / "tutorial.md"
    atomic_write_text(page, "\n".join(lines))
    print(f"wrote {page} and {figures}/")
    return page


if __name__ == "__main__":
    main()
