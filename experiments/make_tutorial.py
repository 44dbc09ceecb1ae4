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
from resnet_scratch.experiment_pages import fill, read_phrases, read_template, results_table, table_columns, unfinished
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
TEMPLATES = ROOT / "experiments" / "templates"


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


def sanity_values(figures: Path, phrases: dict[str, str]) -> dict[str, object]:
    """The four checks, run live on the generated batch their tests use: the values section 5 states."""
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
    less = ratio["residual-34"] < ratio["plain-34"]
    times = ratio["plain-34"] / ratio["residual-34"]
    return {
        "chance_loss": f"{chance_loss(4):.3f}",
        "loss_plain": f"{loss_plain:.3f}",
        "loss_residual": f"{loss_residual:.3f}",
        "loss_silenced": f"{loss_silenced:.3f}",
        "further": phrases["further_residual" if gap["residual"] > gap["plain"] else "further_plain"],
        "lr": lr,
        "first_loss": f"{losses[0]:.2f}",
        "last_loss": f"{losses[-1]:.4f}",
        "steps": len(losses),
        "identity_blocks": ", ".join(f"`{b}`" for b in blocks),
        "passthrough": f"{passthrough:g}",
        "ratio_plain": f"{ratio['plain-34']:.3g}",
        "ratio_residual": f"{ratio['residual-34']:.3g}",
        "shortcut_effect": fill(phrases["shortcut_less"], {"times": f"{times:.3g}"})
        if less
        else phrases["shortcut_no_less"],
    }


def experiment_section(docs: Path, name: str, figures: list[str], phrases: dict[str, str]) -> str:
    """An experiment's table, notes and figures, from docs/results/<name>/results.json."""
    path = docs / "results" / name / "results.json"
    if not path.is_file():
        return fill(phrases["no_results"], {"name": name}) + "\n"
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
    return "\n".join(lines)


def frozen_counts() -> dict[str, str]:
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
    return {"trainable_all": f"{counts[None]:,}", "trainable_head": f"{counts['backbone']:,}"}


def shortcut_table() -> str:
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
    return "\n".join(lines)


def bottleneck_arithmetic() -> dict[str, str]:
    """Why the bottleneck: the paper's Figure 5 comparison, and two 3x3 convolutions at 256 channels
    against 1x1-3x3-1x1 through 64 (weights and multiply-adds on a 56 x 56 map)."""
    conv = lambda b: sum(m.weight.numel() for m in b.modules() if isinstance(m, torch.nn.Conv2d))  # noqa: E731
    with torch.device("meta"):
        blocks = {"narrow": BasicBlock(64, 64), "wide": BasicBlock(256, 256), "neck": Bottleneck(256, 64)}
        values = {}
        for name, block in blocks.items():
            macs = count_macs_of(block.eval(), torch.empty(1, block.conv1.in_channels, 56, 56))
            values |= {f"{name}_weights": f"{conv(block):,}", f"{name}_macs": f"{macs / 1e6:,.0f}"}
    return values | {"wide_over_neck": f"{conv(blocks['wide']) / conv(blocks['neck']):.0f}"}


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


def recipe_result(docs: Path, phrases: dict[str, str]) -> str:
    """ "(Testing X% full, ...)" from the external-validity experiment's recipe arm, where it has run."""
    path = docs / "results" / "external_validity" / "results.json"
    if not path.is_file():
        return phrases["recipe_unmeasured"]
    arm = next(a for a in json.loads(path.read_text())["arms"] if a["label"] == "recipe")
    n = arm["finished"]
    seeds = phrases["one_seed"] if n == 1 else fill(phrases["n_seeds"], {"n": n})
    full, leak_free = 100 * arm["test_accuracy"]["mean"], 100 * arm["leak_free_accuracy"]["mean"]
    return fill(phrases["recipe_measured"], {"full": f"{full:.1f}", "leak_free": f"{leak_free:.1f}", "seeds": seeds})


def data_facts(docs: Path, phrases: dict[str, str]) -> dict[str, str]:
    """What the splits hide, with the audit's and the validation split's figures (docs/results/data)."""
    audit = docs / "results" / "data" / "audit.json"
    split = docs / "results" / "data" / "validation_split.json"
    copies, moved = phrases["copies_unmeasured"], phrases["moved_unmeasured"]
    if audit.is_file():
        a = json.loads(audit.read_text())
        copies = fill(
            phrases["copies_measured"], {"identical": a["test_images_in_train"], "near": a["test_images_near_train"]}
        )
    if split.is_file():
        before = [s["identical kept together"] for s in json.loads(split.read_text())["seeds"]]
        counts = [b["val_with_a_copy_in_train"] for b in before]
        moved = " " + fill(
            phrases["moved_measured"], {"low": min(counts), "high": max(counts), "val": before[0]["val"]}
        )
    return {"copies": copies, "moved": moved}


def skip_epochs() -> int:
    """The CPU budget of the skip ablation (experiments/ablate_skip.py's EPOCHS)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablate_skip", ROOT / "experiments" / "ablate_skip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EPOCHS["cpu"]


def main(docs: Path = DOCS) -> Path:
    """Write docs/tutorial.md and docs/tutorial/*.png (reading docs/results/); returns the page. The
    prose is experiments/templates/tutorial.md; this fills its slots with what the code measures."""
    from resnet_scratch.config import read_toml, recipe_path

    figures = docs / "tutorial"
    figures.mkdir(parents=True, exist_ok=True)
    phrases = read_phrases(TEMPLATES / "tutorial_phrases.md")
    recipe = read_toml(recipe_path("main_cpu"))
    plot_blocks(figures / "blocks.png")
    plot_crops(figures / "crops.png", recipe["crop_scale_min"])
    plot_schedules(figures / "schedules.png", recipe, steps=steps_per_epoch(docs, recipe["batch_size"]))
    with torch.device("meta"):
        v1 = count_macs(build("resnet50", stride_on="1x1").eval(), 224)[0]
        v15 = count_macs(build("resnet50").eval(), 224)[0]
    torch.manual_seed(0)
    first_basic, identity_basic = BasicBlock(64, 128, stride=2).eval(), BasicBlock(128, 128).eval()
    first_neck = Bottleneck(256, 128, stride=2).eval()
    values = {
        "basic_forward": source_of(BasicBlock.forward),
        "walk_basic_first": "\n".join(walkthrough(first_basic, torch.randn(1, 64, 56, 56), "conv2_x's output")),
        "walk_basic_identity": "\n".join(
            walkthrough(identity_basic, torch.randn(1, 128, 28, 28), "the first block's output")
        ),
        "bottleneck_forward": source_of(Bottleneck.forward),
        **bottleneck_arithmetic(),
        "walk_bottleneck_first": "\n".join(walkthrough(first_neck, torch.randn(1, 256, 56, 56), "conv2_x's output")),
        "v15_gmacs": f"{v15 / 1e9:.2f}",
        "v1_gmacs": f"{v1 / 1e9:.2f}",
        "zero_pad_forward": source_of(ZeroPadShortcut.forward),
        "shortcut_table": shortcut_table(),
        "resnet_specs": ", ".join(f"{d}: {block.__name__} x {counts}" for d, (block, counts) in RESNET_SPECS.items()),
        "summary_resnet50": summarize("resnet50"),
        **sanity_values(figures, phrases),
        "ablate_skip": experiment_section(docs, "ablate_skip", ["curves.png", "grad_norms.png"], phrases),
        "ablate_dropout": experiment_section(docs, "ablate_dropout", ["gap.png", "curves.png"], phrases),
        "crop_scale_min_percent": f"{100 * recipe['crop_scale_min']:.0f}",
        "recipe_result": recipe_result(docs, phrases),
        **data_facts(docs, phrases),
        "resnet50_torchvision_file": MODEL_INFO["resnet50"].torchvision_file,
        **frozen_counts(),
        "double_skip_epochs": 2 * skip_epochs(),
    }
    page = docs / "tutorial.md"
    atomic_write_text(page, fill(read_template(TEMPLATES / "tutorial.md"), values))
    print(f"wrote {page} and {figures}/")
    return page


def source_of(function: object) -> str:
    """A function's source, dedented, as the page shows it."""
    return textwrap.dedent(inspect.getsource(function)).rstrip()


if __name__ == "__main__":
    main()
