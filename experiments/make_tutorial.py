"""Regenerate docs/tutorial.md and its figures (docs/tutorial/) from the live code and the committed
results: every shape, count and number in the tutorial is printed by the model or read from
docs/results/, never typed. Runs in a few seconds on the CPU.

    python experiments/make_tutorial.py
"""

import inspect
import json
import tempfile
import textwrap
from pathlib import Path

import torch
from matplotlib.patches import Rectangle

from resnet_scratch import build
from resnet_scratch.data.transforms import crop_boxes
from resnet_scratch.experiment import results_table
from resnet_scratch.files import atomic_write_text
from resnet_scratch.models import MODEL_INFO
from resnet_scratch.models.resnet import RESNET_SPECS, Bottleneck
from resnet_scratch.report import new_figure, save_figure
from resnet_scratch.summary import summarize

DOCS = Path(__file__).resolve().parent.parent / "docs"


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
    return type(module).__name__


def block_walkthrough() -> list[str]:
    """The Bottleneck's forward, then the shape after every operation of a live block."""
    block = Bottleneck(256, 128, stride=2).eval()  # the first block of conv3_x in ResNet-50
    x = torch.randn(1, 256, 56, 56)
    steps: list[tuple[str, str, tuple[int, ...]]] = [("x", "input (conv2_x's output)", tuple(x.shape))]
    for name, module in block.named_children():
        if name == "relu":
            continue
        module.register_forward_hook(lambda m, i, o, name=name: steps.append((name, compact(m), tuple(o.shape))))
    with torch.no_grad():
        out = block(x)
    steps.append(("out", "relu(F(x) + shortcut(x))", tuple(out.shape)))
    source = textwrap.dedent(inspect.getsource(Bottleneck.forward))
    table = ["| step | operation | output (N x C x H x W) |", "|---|---|---|"]
    for name, op, shape in steps:
        table.append(f"| `{name}` | {op} | {' x '.join(map(str, shape))} |")
    params = sum(p.numel() for p in block.parameters())
    return [
        "```python",
        source.rstrip(),
        "```",
        "",
        f"A live `Bottleneck(256, 128, stride=2)`, the first block of ResNet-50's conv3_x, on a 56 x 56 input "
        f"({params:,} parameters). The shortcut is a projection here (1x1 conv, stride 2, + BN: the paper's "
        "option B) because both the channels and the size change; everywhere else it is the identity.",
        "",
    ] + table


def plot_crops(path: Path) -> Path:
    """200 crop boxes of RandomResizedCrop at the default scale (0.08, 1) and at the recipes' (0.35, 1)."""
    fig = new_figure(9, 4.4)
    axes = fig.subplots(1, 2)
    for ax, low in zip(axes, (0.08, 0.35)):
        boxes = crop_boxes(200, 224, 224, scale=(low, 1.0), generator=torch.Generator().manual_seed(0))
        for top, left, h, w in boxes.tolist():
            ax.add_patch(Rectangle((left, top), w, h, fill=False, alpha=0.25, linewidth=0.8))
        small = (boxes[:, 2] * boxes[:, 3] < 0.2 * 224 * 224).float().mean()
        ax.set(
            xlim=(0, 224),
            ylim=(224, 0),
            aspect="equal",
            title=f"scale ({low}, 1): {100 * small:.0f}% of crops < 20% of the slice",
        )
    fig.suptitle("RandomResizedCrop boxes on a 224 x 224 slice (200 draws each)")
    return save_figure(fig, path, dpi=100)


def plot_schedules(path: Path, epochs: int = 22, steps: int = 81) -> Path:
    """The learning rate per batch under StepLR (the tutorial recipe) and OneCycleLR (the CPU recipe)."""
    model = torch.nn.Linear(1, 1)
    curves = {}
    for name in ("step", "onecycle"):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if name == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=epochs, steps_per_epoch=steps)
        lrs = []
        for _epoch in range(epochs):
            for _ in range(steps):
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                if name == "onecycle":
                    sched.step()
            if name == "step":
                sched.step()
        curves[name] = lrs
    fig = new_figure(8, 3.2)
    ax = fig.subplots()
    x = torch.arange(epochs * steps) / steps
    ax.plot(x, curves["step"], label="StepLR(step_size=7, gamma=0.1), per epoch")
    ax.plot(x, curves["onecycle"], label="OneCycleLR(max_lr=0.1), per batch")
    ax.set(xlabel="epoch", ylabel="learning rate", title="Two schedules, peak 0.1, 22 epochs")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path, dpi=100)


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


def experiment_section(docs: Path, name: str, figures: list[str]) -> list[str]:
    """An experiment's table and figures, from docs/results/<name>/results.json."""
    path = docs / "results" / name / "results.json"
    if not path.is_file():
        return [f"(Run `python experiments/{name}.py --scale cpu` to produce this section's results.)", ""]
    record = json.loads(path.read_text())
    arms = {arm["label"]: arm for arm in record["arms"] if arm["finished"]}
    measured = "; ".join(
        f"{label}: training error {100 * (1 - arm['train_accuracy']['mean']):.1f}%, validation error "
        f"{100 * (1 - arm['val_accuracy']['mean']):.1f}%, Testing accuracy {100 * arm['test_accuracy']['mean']:.1f}%"
        for label, arm in arms.items()
    )
    lines = [
        f"From `{record['command']}` ({record['seeds']} seeds, {', '.join(record['devices'])}); "
        f"[full results](results/{name}/README.md). Last epoch, mean over seeds: {measured}.",
        "",
    ]
    lines += results_table(record["arms"]) + [""]
    lines += [note + "\n" for note in record["notes"]]
    for file in figures:
        caption = next(f["caption"] for f in record["figures"] if f["file"] == file)
        lines += [f"![{caption}](results/{name}/{file})", "", f"*{caption}*", ""]
    return lines


def main(docs: Path = DOCS) -> Path:
    """Write docs/tutorial.md and docs/tutorial/*.png (reading docs/results/); returns the page."""
    figures = docs / "tutorial"
    figures.mkdir(parents=True, exist_ok=True)
    plot_crops(figures / "crops.png")
    plot_schedules(figures / "schedules.png")
    table = ", ".join(f"{depth}: {block.__name__} x {counts}" for depth, (block, counts) in RESNET_SPECS.items())
    lines = (
        [
            "# Tutorial: residual networks on brain MRI, from one block to a trained model",
            "",
            "Generated by `python experiments/make_tutorial.py` from the live code and docs/results/; "
            "do not edit by hand.",
            "",
            "## 1. A residual block, step by step",
            "",
            "A residual block learns F(x) and outputs relu(F(x) + x): if the best thing a block can do is nothing, "
            "it only has to drive F to zero, which is easier than learning the identity through a stack of "
            "non-linear layers (He et al., 2015, Section 3.1). ResNet-50 and deeper use the bottleneck form: a 1x1 "
            "conv squeezes the channels, a 3x3 conv works at that width, a 1x1 conv expands by 4. This is its "
            "`forward` in `resnet_scratch/models/resnet.py`:",
            "",
        ]
        + block_walkthrough()
        + [
            "",
            "## 2. The paper's layer table, printed from the live model",
            "",
            f"The architecture is data: `RESNET_SPECS` in the same file is the paper's Table 1 ({table}). "
            "`python -m resnet_scratch summary resnet50` walks a model on the meta device (no memory, no compute) "
            "and prints every stage's output shape, parameters and multiply-adds beside the paper's figures:",
            "",
            "```",
            summarize("resnet50"),
            "```",
            "",
            "## 3. What the skip connections change",
            "",
            "`skip=False` builds the paper's plain network: the same layers, no shortcuts. In the paper's Figure 4 "
            "the 34-layer plain network has higher *training* error than the 18-layer one (degradation, not "
            "overfitting), while with shortcuts the deeper network is the better one. Compare the training errors "
            "below. The gradient-norm figure tests the paper's claim that, with BatchNorm, the plain network's "
            "gradients do not vanish.",
            "",
        ]
        + experiment_section(docs, "ablate_skip", ["curves.png", "grad_norms.png"])
        + [
            "## 4. What dropout changed",
            "",
            "Dropout zeroes a random fraction p of the features in training (and scales the rest by 1/(1-p)), so "
            "no unit can rely on another; it fights overfitting, visible as a gap between training and validation "
            "accuracy. ResNet's paper uses none (BatchNorm regularises); VGG16 uses p = 0.5 in its classifier.",
            "",
        ]
        + experiment_section(docs, "ablate_dropout", ["gap.png", "curves.png"])
        + [
            "## 5. The data: crops and the schedule",
            "",
            "RandomResizedCrop's default draws crops down to 8% of the image; on a brain slice that often cuts the "
            "tumour out, so the recipes use at least 35%:",
            "",
            "![crop boxes](tutorial/crops.png)",
            "",
            "The tutorial recipe decays the learning rate in steps; the CPU recipe warms up and anneals every batch "
            "(one-cycle). The best CPU result so far used one-cycle (resnet18_cpu_onecycle in "
            "[results](results.md)); the two schedules have not been compared at equal epochs and seeds:",
            "",
            "![learning-rate schedules](tutorial/schedules.png)",
            "",
            "The Testing split shares hundreds of images with Training ([data.md](data.md)), so every result is "
            "reported on the full split and on the leak-free subset.",
            "",
            "## 6. Fine-tuning from ImageNet",
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
        ]
    )
    page = docs / "tutorial.md"
    atomic_write_text(page, "\n".join(lines))
    print(f"wrote {page} and {figures}/")
    return page


if __name__ == "__main__":
    main()
