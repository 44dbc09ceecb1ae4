"""Regenerate docs/tutorial.md and its figures (docs/tutorial/) from the live code and the committed
results: every shape, count and number in the tutorial is printed by the model or read from
docs/results/, never typed. Runs in under a minute on the CPU.

    python experiments/make_tutorial.py
"""

import inspect
import json
import sys
import textwrap
from pathlib import Path

import matplotlib.ticker
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from resnet_scratch import build
from resnet_scratch.experiment_pages import arm_colour, fill, read_phrases, read_template
from resnet_scratch.explain import stage_grad_norms
from resnet_scratch.files import atomic_write_text
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
sys.path.insert(0, str(ROOT))  # learn/ sits beside the package
from learn import blocks, solutions  # noqa: E402

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


def draw_block(ax, layers: list[str], shortcut: str | None, title: str) -> None:
    """A block as the paper draws it (Figures 2 and 5): the branch F top to bottom, the shortcut around
    it on the right (none for a plain block), the addition and the ReLU at the bottom."""
    height = 2.2 + 1.2 * len(layers)
    ax.set(xlim=(0, 10), ylim=(-0.4, height))
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    top = height - 0.6
    ax.text(3.0, top + 0.1, "x", ha="center", va="center", fontsize=12)
    y = top - 0.3
    for layer in layers:
        ax.add_patch(FancyArrowPatch((3.0, y), (3.0, y - 0.35), arrowstyle="->", mutation_scale=10))
        y -= 1.2
        strided = "/2" in layer
        colour = "#f6d7c3" if strided else "#dbe8f5"
        ax.add_patch(FancyBboxPatch((0.9, y), 4.2, 0.8, boxstyle="round,pad=0.06", fc=colour, ec="#35608a"))
        ax.text(3.0, y + 0.4, layer, ha="center", va="center", fontsize=8.5)
    branch = "F(x)" if shortcut else "H(x)"  # the paper: plain layers fit H(x) itself, residual ones H(x) - x
    ax.text(0.35, (top + y) / 2, branch, ha="center", va="center", fontsize=10, rotation=90, color="#35608a")
    if shortcut is None:  # a plain block: the branch is all there is
        ax.add_patch(FancyArrowPatch((3.0, y), (3.0, -0.25), arrowstyle="->", mutation_scale=10))
        ax.text(3.3, 0.4, "relu", fontsize=8)
        return
    ax.add_patch(FancyArrowPatch((3.0, y), (3.0, 0.95), arrowstyle="->", mutation_scale=10))
    ax.text(3.0, 0.7, "+", ha="center", va="center", fontsize=12, bbox={"boxstyle": "circle", "fc": "white"})
    ax.add_patch(FancyArrowPatch((3.3, top + 0.1), (6.0, top + 0.1), arrowstyle="-", color="#b5462f"))
    ax.add_patch(FancyArrowPatch((6.0, top + 0.1), (6.0, 0.7), arrowstyle="-", color="#b5462f"))
    ax.add_patch(FancyArrowPatch((6.0, 0.7), (3.35, 0.7), arrowstyle="->", mutation_scale=10, color="#b5462f"))
    ax.text(6.2, (top + 0.7) / 2, shortcut, ha="left", va="center", fontsize=8, color="#b5462f")
    ax.add_patch(FancyArrowPatch((3.0, 0.42), (3.0, -0.25), arrowstyle="->", mutation_scale=10))
    ax.text(3.3, -0.05, "relu", fontsize=8)


def plot_blocks(path: Path) -> Path:
    """A plain block, a residual basic block and a bottleneck, each the first block of a stage that
    halves the map: channel widths in every layer, the strided layer shaded and marked /2."""
    fig = new_figure(13, 5.6)
    plain, basic, neck = fig.subplots(1, 3)
    basic_layers = ["3x3 conv, 64 -> 128, /2", "BN, relu", "3x3 conv, 128 -> 128", "BN"]
    draw_block(plain, basic_layers, None, "plain block (skip=False): the layers fit H(x)\n64 channels in, 128 out")
    draw_block(
        basic,
        basic_layers,
        "1x1 conv,\n64 -> 128, /2,\n+ BN\n(option B)",
        "residual basic block (ResNet-18/34)\nthe layers fit F(x) = H(x) - x",
    )
    draw_block(
        neck,
        ["1x1 conv, 256 -> 128", "BN, relu", "3x3 conv, 128 -> 128, /2", "BN, relu", "1x1 conv, 128 -> 512", "BN"],
        "1x1 conv,\n256 -> 512, /2,\n+ BN\n(option B)",
        "bottleneck (ResNet-50/101/152)\nsqueeze 256 -> 128, expand -> 512",
    )
    fig.suptitle(
        "The first block of conv3_x in each network: /2 marks the stride-2 layer (shaded), which halves the map.\n"
        "Where the shape does not change, the shortcut is x itself.",
        fontsize=10,
    )
    return save_figure(fig, path, dpi=100)


def plot_sanity(path: Path, losses: dict[str, list[float]], norms: dict[str, dict[str, float]], lr: float) -> Path:
    """Overfitting one batch (real and zeroed inputs), and the gradient reaching each stage at
    initialisation, plain against residual: lines with markers on log axes."""
    fig = new_figure(11, 3.8)
    left, right = fig.subplots(1, 2)
    for (label, values), style in zip(losses.items(), ("-", "--")):  # black and grey: not arms
        left.plot(range(1, len(values) + 1), values, style, color="black" if style == "-" else "grey", label=label)
    left.axhline(chance_loss(4), color="grey", linestyle=":", linewidth=1, label="ln 4")
    left.set(xlabel="SGD step", ylabel="training loss (log)", yscale="log")
    left.set_title(f"ResNet-18 on one batch of 8 generated images, lr {lr}", fontsize=10)
    left.legend(fontsize=8)
    stages = [s for s in next(iter(norms.values())) if s != "fc"]  # the logits' gradient is another scale
    for label, values in norms.items():
        style = "--" if label.startswith("plain") else "-"
        right.plot(stages, [values[s] for s in stages], style, marker="o", color=arm_colour(label), label=label)
    right.set(ylabel="RMS of dLoss/d(stage output) (log)", yscale="log", xlabel="stage, from the input")
    right.set_title("ResNet-34 at initialisation, 16 generated images, 64 px", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=100)


def sanity_values(figures: Path, phrases: dict[str, str], docs: Path) -> dict[str, object]:
    """The four checks, run live on the generated batch their tests use: the values section 5 states."""
    x, y = generated_batch()
    torch.manual_seed(0)  # each model drawn from seed 0, as exercise 4 draws its own
    plain = build("resnet18", num_classes=4, skip=False)
    torch.manual_seed(0)
    residual = build("resnet18", num_classes=4)
    loss_plain, loss_residual = initial_loss(plain, x, y), initial_loss(residual, x, y)
    silence_residual_branches(residual)
    loss_silenced = initial_loss(residual, x, y)
    blocks = [name for name, _ in identity_blocks(residual)]
    passthrough = passthrough_error(residual, torch.relu(x))
    lr = inspect.signature(overfit_one_batch).parameters["lr"].default
    batch, labels = x[:8, :, :32, :32], y[:8]
    losses = {}
    for label, images in (("the images", batch), ("zeroed inputs", torch.zeros_like(batch))):
        torch.manual_seed(0)
        losses[label] = overfit_one_batch(build("resnet18", num_classes=4), images, labels, steps=60)
    norms = {}
    for label, skip in (("plain-34", False), ("residual-34 (B)", True)):
        torch.manual_seed(0)
        norms[label] = stage_grad_norms(build("resnet34", num_classes=4, skip=skip), x, y)
    plot_sanity(figures / "sanity.png", losses, norms, lr)
    ratio = {label: v["conv1"] / v["conv5_x"] for label, v in norms.items()}
    gap = {name: abs(loss - chance_loss(4)) for name, loss in (("plain", loss_plain), ("residual", loss_residual))}
    less = ratio["residual-34 (B)"] < ratio["plain-34"]
    times = ratio["plain-34"] / ratio["residual-34 (B)"]
    real = docs / "results" / "ablate_skip" / "results.json"
    at_init = json.loads(real.read_text())["extra"]["grad_norms_at_init"] if real.is_file() else {}
    real_ratio = {k: v["conv1"]["mean"] / v["conv5_x"]["mean"] for k, v in at_init.items()}
    return {
        "chance_loss": f"{chance_loss(4):.3f}",
        "loss_plain": f"{loss_plain:.3f}",
        "loss_residual": f"{loss_residual:.3f}",
        "loss_silenced": f"{loss_silenced:.3f}",
        "further": phrases["further_residual" if gap["residual"] > gap["plain"] else "further_plain"],
        "lr": lr,
        "first_loss": f"{losses['the images'][0]:.2f}",
        "last_loss": f"{losses['the images'][-1]:.1e}",
        "zeroed_loss": f"{losses['zeroed inputs'][-1]:.2f}",
        "steps": len(losses["the images"]),
        "identity_blocks": ", ".join(f"`{b}`" for b in blocks),
        "passthrough": f"{passthrough:g}",
        "ratio_plain": f"{ratio['plain-34']:.0f}",
        "ratio_residual": f"{ratio['residual-34 (B)']:.1f}",
        "shortcut_effect": fill(phrases["shortcut_less"], {"times": f"{times:.0f}"})
        if less
        else phrases["shortcut_no_less"],
        "ratio_real": fill(
            phrases["ratio_real"],
            {k: f"{real_ratio[v]:.1f}" for k, v in (("plain", "plain-34"), ("residual", "residual-34 (B)"))}
            | {"times": f"{real_ratio['plain-34'] / real_ratio['residual-34 (B)']:.0f}"},
        )
        if {"plain-34", "residual-34 (B)"} <= set(real_ratio)
        else phrases["ratio_real_unmeasured"],
    }


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


def skip_epochs() -> int:
    """The CPU budget of the skip ablation (experiments/ablate_skip.py's EPOCHS)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablate_skip", ROOT / "experiments" / "ablate_skip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EPOCHS["cpu"]


# The arms section 6 shows (the option-A arms are on the results page), and the notes it keeps.
SKIP_ARMS = ("plain-18", "plain-34", "residual-18 (B)", "residual-34 (B)")
SKIP_NOTES = ("Half 1", "Half 2, option B", "Shortcuts at 34 layers, option B")


def skip_values(docs: Path, figures: Path, phrases: dict[str, str]) -> dict[str, str]:
    """Section 6 from the skip ablation's results.json: a short table, its verdicts, and a two-panel
    figure in the style of the paper's Figure 4."""
    path = docs / "results" / "ablate_skip" / "results.json"
    if not path.is_file():
        missing = fill(phrases["no_results"], {"name": "ablate_skip"})
        return {"skip_table": missing, "skip_verdicts": "", "figure4_caption": "", "skip_size": "64"}
    record = json.loads(path.read_text())
    arms = {a["label"]: a for a in record["arms"] if a["label"] in SKIP_ARMS and a["finished"]}
    error = lambda arm, key: f"{100 * (1 - arm[key]['mean']):.1f} ± {100 * arm[key]['std']:.1f}"  # noqa: E731
    table = ["| network | training error % | validation error % | leak-free Testing error % | seeds |"]
    table.append("|---|---:|---:|---:|---:|")
    for label, arm in arms.items():
        cells = [error(arm, "train_eval_accuracy"), error(arm, "val_accuracy"), error(arm, "leak_free_accuracy")]
        table.append(f"| {label} | " + " | ".join(cells) + f" | {arm['finished']} |")
    table.append("")
    table.append("Errors are the last epoch's, mean ± standard deviation over seeds.")
    verdicts = [n for n in record["notes"] if n.startswith(SKIP_NOTES)]
    plot_figure4(figures / "figure4.png", arms)
    size = next(iter(arms.values()))["input_size"] if arms else 64
    return {
        "skip_table": "\n".join(table),
        "skip_verdicts": "\n\n".join(verdicts),
        "figure4_caption": phrases["figure4_caption"],
        "skip_size": str(size),
    }


def plot_figure4(path: Path, arms: dict[str, dict]) -> Path:
    """Training (dashed) and validation (solid) error per epoch, plain networks left and residual
    right, as in the paper's Figure 4; each arm's mean over seeds with its range shaded."""
    fig = new_figure(11, 4.0)
    panels = dict(zip(("plain", "residual (option B)"), fig.subplots(1, 2, sharey=True)))
    for label, arm in arms.items():
        ax = panels["plain" if label.startswith("plain") else "residual (option B)"]
        for key, style, name in (("train_eval_accuracy", "--", "training"), ("val_accuracy", "-", "validation")):
            runs = 100 * (1 - np.array([seed["curves"][key] for seed in arm["seeds"]]))
            epochs = np.arange(1, runs.shape[1] + 1)
            marker = "o" if name == "validation" else None  # dashes alone for training, so the legend tells them apart
            ax.plot(
                epochs,
                runs.mean(0),
                style,
                marker=marker,
                linewidth=2,
                color=arm_colour(label),
                label=f"{label}, {name}",
            )
            if name == "validation":  # one band per arm: four would hide each other
                ax.fill_between(epochs, runs.min(0), runs.max(0), color=arm_colour(label), alpha=0.10)
    for title, ax in panels.items():
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    panels["plain"].set_ylabel("error % (eval mode, centre crops)")
    return save_figure(fig, path, dpi=100)


def responses_values(docs: Path, phrases: dict[str, str]) -> dict[str, str]:
    """The Figure 7 measurement (experiments/residual_responses.py): its notes and figure."""
    path = docs / "results" / "residual_responses" / "results.json"
    if not path.is_file():
        return {"responses_section": fill(phrases["no_results"], {"name": "residual_responses"})}
    record = json.loads(path.read_text())
    caption = record["figures"][0]["caption"]
    summary = [note for note in record["notes"] if note.startswith("In short")]  # the details stay on its page
    lines = [*summary, f"![{caption}](results/residual_responses/responses.png)", f"*{caption}*"]
    lines.append(phrases["responses_more"])
    return {"responses_section": "\n\n".join(lines)}


def exercise_values() -> dict[str, str]:
    """The folded answers (learn/solutions.py) and the figures they quote, measured."""
    x, y = generated_batch()
    losses = {}
    for zero in (True, False):  # in train mode, as check 1 of section 5 measures
        torch.manual_seed(0)
        losses[zero] = initial_loss(build("resnet18", num_classes=4, zero_init_residual=zero), x, y)
    with torch.device("meta"):
        a, b = (params(build("resnet34", shortcut=o)) for o in "AB")
        model = build("resnet34")
    projections = [
        (name.split(".")[0], params(block.shortcut))
        for name, block in model.named_modules()
        if getattr(block, "shortcut", None) is not None and name
    ]
    return {
        "copy_weights_source": source_of(solutions.copy_weights),
        "depth_source": source_of(solutions.depth),
        "preact_source": source_of(solutions.PreActBlock),
        "zero_init_source": source_of(solutions.zero_init_residual),
        "zero_init_loss": f"{losses[True]:.3f}",
        "plain_init_loss": f"{losses[False]:.3f}",
        "projection_params": f"{b - a:,}",
        "projection_counts": ", ".join(f"{count:,} ({stage})" for stage, count in projections),
    }


def main(docs: Path = DOCS) -> Path:
    """Write docs/tutorial.md and docs/tutorial/*.png (reading docs/results/); returns the page. The
    prose is experiments/templates/tutorial.md; this fills its slots with what the code measures."""
    figures = docs / "tutorial"
    figures.mkdir(parents=True, exist_ok=True)
    for stale in ("crops.png", "schedules.png"):  # figures of sections that moved to other pages
        (figures / stale).unlink(missing_ok=True)
    phrases = read_phrases(TEMPLATES / "tutorial_phrases.md")
    plot_blocks(figures / "blocks.png")
    with torch.device("meta"):
        v1 = count_macs(build("resnet50", stride_on="1x1").eval(), 224)[0]
        v15 = count_macs(build("resnet50").eval(), 224)[0]
    torch.manual_seed(0)
    first_basic, first_neck = BasicBlock(64, 128, stride=2).eval(), Bottleneck(256, 128, stride=2).eval()
    values = {
        "basic_block_source": source_of(blocks.BasicBlock),
        "walk_basic_first": "\n".join(walkthrough(first_basic, torch.randn(1, 64, 56, 56), "conv2_x's output")),
        "bottleneck_source": source_of(blocks.Bottleneck),
        **bottleneck_arithmetic(),
        "walk_bottleneck_first": "\n".join(walkthrough(first_neck, torch.randn(1, 256, 56, 56), "conv2_x's output")),
        "v15_gmacs": f"{v15 / 1e9:.2f}",
        "v1_gmacs": f"{v1 / 1e9:.2f}",
        "shortcut_table": shortcut_table(),
        "resnet_specs": "\n".join(f"{d}: ({block.__name__}, {counts})," for d, (block, counts) in RESNET_SPECS.items()),
        "summary_resnet50": summarize("resnet50"),
        **sanity_values(figures, phrases, docs),
        "skip_epochs": str(skip_epochs()),
        **skip_values(docs, figures, phrases),
        **responses_values(docs, phrases),
        **exercise_values(),
        "double_skip_epochs": 2 * skip_epochs(),
    }
    page = docs / "tutorial.md"
    atomic_write_text(page, fill(read_template(TEMPLATES / "tutorial.md"), values))
    print(f"wrote {page} and {figures}/")
    return page


def source_of(function: object) -> str:
    """A function's or class's source, dedented, as the page shows it."""
    return textwrap.dedent(inspect.getsource(function)).rstrip()


if __name__ == "__main__":
    main()
