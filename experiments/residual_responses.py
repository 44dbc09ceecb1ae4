"""The ResNet paper's Figure 7 on this dataset: how large each 3x3 layer's response is, plain against
residual, 18 against 34 layers (Section 4.2, "Analysis of Layer Responses").

A response is a layer's output after BatchNorm, before the ReLU or the addition; its size is the
standard deviation over a batch. The paper found the residual networks' responses generally smaller
than the plain ones', and smaller in the deeper residual network: the blocks stay near the identity.
The runs are the skip ablation's own (experiments/ablate_skip.py, the same settings and folders),
without the option-A arms; responses are measured on 256 Training images, centre-cropped.

    python experiments/residual_responses.py --scale cpu
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling script, however it is loaded
from ablate_skip import EPOCHS, arms_for  # noqa: E402  (the skip ablation's arms and budget)

from resnet_scratch.checkpoint import model_from_checkpoint  # noqa: E402
from resnet_scratch.config import Config  # noqa: E402
from resnet_scratch.data import load_split  # noqa: E402
from resnet_scratch.data.transforms import eval_transform  # noqa: E402
from resnet_scratch.experiment import run_arms  # noqa: E402
from resnet_scratch.experiment_cli import RECIPES, base_config, experiment_args, output_dir  # noqa: E402
from resnet_scratch.experiment_pages import arm_colour, fill, read_phrases, write_results  # noqa: E402
from resnet_scratch.experiment_stats import mean_std  # noqa: E402
from resnet_scratch.explain import layer_responses  # noqa: E402
from resnet_scratch.report import new_figure, save_figure  # noqa: E402

NAME = "residual_responses"
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "residual_responses.md")
IMAGES = 256


def measured_batch(config: Config, images: int = IMAGES) -> torch.Tensor:
    """`images` Training images (seed 0), centre-cropped and normalised as validation sees them."""
    split = load_split(Path(config.data), "Training", cache_dir=config.cache_dir)
    rows = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(0))[:images]
    return eval_transform(split.images, config.input_size, rows=rows)


def responses_of(runs: dict[str, list[Path]], x: torch.Tensor) -> dict[str, list[list[float]]]:
    """Per arm, per seed: the standard deviation of every 3x3 layer's response (explain.layer_responses)."""
    found: dict[str, list[list[float]]] = {}
    for label, folders in runs.items():
        for folder in folders:
            model, _ = model_from_checkpoint(folder / "best.safetensors")
            found.setdefault(label, []).append(layer_responses(model, x))
    return found


def plot_responses(path: Path, responses: dict[str, list[list[float]]]) -> Path:
    """The paper's Figure 7: top, the responses by layer index (from the input); bottom, sorted by
    size. Each arm's mean over seeds, its spread shaded."""
    fig = new_figure(10, 6.4)
    by_index, by_size = fig.subplots(2, 1)
    for label, seeds in responses.items():
        values = np.asarray(seeds)
        for ax, rows in ((by_index, values), (by_size, -np.sort(-values, axis=1))):
            x = np.arange(1, values.shape[1] + 1)
            style = "--" if label.startswith("plain") else "-"
            ax.plot(x, rows.mean(0), style, marker=".", color=arm_colour(label), label=label)
            if len(rows) > 1:
                ax.fill_between(x, rows.min(0), rows.max(0), color=arm_colour(label), alpha=0.15)
    by_index.set(xlabel="3x3 layer, from the input", ylabel="std of the response", title="layer by layer")
    by_size.set(xlabel="layer, sorted by its response", ylabel="std of the response", title="sorted by size")
    for ax in (by_index, by_size):
        ax.grid(alpha=0.3)
    by_index.legend(fontsize=8, ncol=4)
    return save_figure(fig, path)


def response_notes(responses: dict[str, list[list[float]]], summaries: list[dict]) -> list[str]:
    """What the measurement says: each arm's mean response, plain against residual seed by seed and
    layer by layer, and the deeper residual network against the shallower one."""
    means = {label: [float(np.mean(seed)) for seed in seeds] for label, seeds in responses.items()}
    text = ", ".join(f"{k} {mean_std(v)['mean']:.3f} ± {mean_std(v)['std']:.3f}" for k, v in means.items())
    notes = [fill(PHRASES["means"], {"means": text})]
    for depth in (18, 34):
        plain, residual = f"plain-{depth}", f"residual-{depth} (B)"
        if plain in means and residual in means:
            seeds = sum(r < p for r, p in zip(means[residual], means[plain]))
            layers = np.mean(responses[residual], axis=0) > np.mean(responses[plain], axis=0)
            values = {"depth": depth, "ratio": f"{np.mean(means[residual]) / np.mean(means[plain]):.2f}"}
            values |= {"seeds": seeds, "n": len(means[plain]), "larger": int(layers.sum()), "layers": len(layers)}
            notes.append(fill(PHRASES["ratio"], values))
    if {"residual-18 (B)", "residual-34 (B)", "plain-18", "plain-34"} <= set(means):
        deeper = sum(a < b for a, b in zip(means["residual-34 (B)"], means["residual-18 (B)"]))
        plain = sum(a < b for a, b in zip(means["plain-34"], means["plain-18"]))
        values = {"seeds": deeper, "plain_seeds": plain, "n": len(means["residual-34 (B)"])}
        notes.append(fill(PHRASES["deeper"], values))
        larger = np.mean(responses["residual-34 (B)"], axis=0) > np.mean(responses["plain-34"], axis=0)
        half = len(larger) // 2
        values = {"early": int(larger[:half].sum()), "late": int(larger[half:].sum()), "half": half}
        errors = {s["label"]: 100 * (1 - s["train_eval_accuracy"]["mean"]) for s in summaries if s["finished"]}
        values |= {"plain_err": f"{errors['plain-34']:.0f}", "residual_err": f"{errors['residual-34 (B)']:.0f}"}
        notes.append(fill(PHRASES["in_short"], values))
    return notes


def main(argv: list[str]) -> None:
    """Train (or reuse) the skip ablation's plain and option-B runs, measure, write the results."""
    args = experiment_args(__doc__, argv)
    preset = RECIPES[args.scale] | {"epochs": EPOCHS[args.scale], "train_eval": True}
    base = base_config(args, preset)
    arms = [arm for arm in arms_for(base) if not arm.label.endswith("(A)")]
    seeds = list(range(args.seeds))
    summaries = run_arms(arms, seeds, args.runs_dir, train=not args.summarize_only)
    runs = {s["label"]: [args.runs_dir / seed["run"] for seed in s["seeds"]] for s in summaries if s["finished"]}
    out = output_dir(NAME, args, summaries)
    responses = responses_of(runs, measured_batch(replace(base, cache_dir=str(args.cache_dir))))
    plot_responses(out / "responses.png", responses)
    notes = response_notes(responses, summaries) + [
        fill(PHRASES["budget"], {"epochs": base.epochs, "size": base.input_size, "images": IMAGES})
    ]
    figures = [(PHRASES["caption"], "responses.png")]
    extra = {"responses": responses, "images": IMAGES}
    write_results(out, NAME, PHRASES["title"], PHRASES["about"], args, argv, summaries, figures, notes, extra)


if __name__ == "__main__":
    main(sys.argv[1:])
