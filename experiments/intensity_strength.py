"""How strong GIN and RandConv should be, chosen on the validation split and Sartaj, never on Br35H.

The external-validity page runs both augmentations at their papers' strength, where they missed its
goals. Here each runs at that strength and at two milder ones, beside the same recipe without either:

  paper    on half the images, blend weight up to 1 (GIN: 4 layers; RandConv: kernels up to 7 px)
  milder   on half the images, blend weight up to 0.5 (GIN: 2 layers; RandConv: up to 3 px)
  mildest  as milder, on a quarter of the images

The runs are a cheap stand-in for the external-validity recipe: the same settings at 64 px for 12
epochs, about 0.14 of its compute. Each family keeps the strength with the best mean of
validation accuracy and Sartaj accuracy. The page never shows Br35H, so the choice cannot look at it.
One seed: a tuning pass. A kept strength that differs from the paper's and beats the recipe without
augmentation is worth trying on the external-validity page, at 128 px and 3 seeds.

    python experiments/intensity_strength.py --scale cpu --seeds 1
    python experiments/intensity_strength.py --scale tiny --seeds 1   # a smoke test on generated images
"""

import sys
from dataclasses import replace
from pathlib import Path

from resnet_scratch.config import Config, read_toml, recipe_path
from resnet_scratch.cost import planned_cost
from resnet_scratch.experiment import Arm
from resnet_scratch.experiment_cli import RECIPES, base_config, experiment_args, output_dir, run_experiment
from resnet_scratch.experiment_pages import fill, read_phrases, write_results
from resnet_scratch.experiment_stats import mean_std
from resnet_scratch.report import new_figure, save_figure

NAME = "intensity_strength"
SARTAJ, BR35H = "sartaj", "br35h-tumour"
NONE = "neither"
# The stand-in for the CPU recipe (128 px, 22 epochs): a quarter of the pixels, 12 of the epochs.
STAND_IN = {"cpu": {"image_size": 64, "epochs": 12}}
STRENGTHS = {
    "GIN": {
        "paper": {"gin": 0.5},
        "milder": {"gin": 0.5, "gin_blend": 0.5, "gin_depth": 2},
        "mildest": {"gin": 0.25, "gin_blend": 0.5, "gin_depth": 2},
    },
    "RandConv": {
        "paper": {"randconv": 0.5},
        "milder": {"randconv": 0.5, "randconv_blend": 0.5, "randconv_kernel": 3},
        "mildest": {"randconv": 0.25, "randconv_blend": 0.5, "randconv_kernel": 3},
    },
}
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "intensity_strength.md")


def arms_for(base: Config) -> list[Arm]:
    """The recipe without either augmentation, then each family at each strength."""
    arms = [Arm(NONE, base)]
    for family, strengths in STRENGTHS.items():
        arms += [Arm(f"{family}: {name}", replace(base, **changes)) for name, changes in strengths.items()]
    return arms


def sartaj_only(external: Path, runs_dir: Path) -> Path:
    """An external root holding Sartaj alone (a link to external/sartaj under runs_dir), so that the tuning
    runs never score Br35H at all."""
    if not (external / SARTAJ).is_dir():
        raise SystemExit(f"error: {external / SARTAJ} is not a folder; tuning needs Sartaj")
    root = runs_dir / "sartaj-only"
    link = root / SARTAJ
    root.mkdir(parents=True, exist_ok=True)
    target = (external / SARTAJ).absolute()
    if link.is_symlink() and link.resolve() != target.resolve():
        link.unlink()  # another --external: point at this one's Sartaj
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return root


def without_br35h(summary: dict) -> dict:
    """A copy of an arm's or a seed's summary whose external figures leave Br35H out."""
    return summary | {"external": {k: v for k, v in summary.get("external", {}).items() if k != BR35H}}


def scores(summaries: list[dict]) -> list[dict]:
    """Per arm with a finished run: validation accuracy (the chosen checkpoint's), Sartaj accuracy and
    their mean, each as a mean over seeds."""
    rows = []
    for arm in summaries:
        seeds = [s for s in arm["seeds"] if "diverged" not in s and SARTAJ in s.get("external", {})]
        if not seeds:
            continue
        val = mean_std([s["best_val_accuracy"] for s in seeds])["mean"]
        sartaj = mean_std([s["external"][SARTAJ]["value"] for s in seeds])["mean"]
        rows.append({"label": arm["label"], "val": val, "sartaj": sartaj, "score": (val + sartaj) / 2})
    return rows


def picks(rows: list[dict]) -> dict[str, str | None]:
    """Each family's best-scoring strength (its label), None where none of its runs has finished."""
    chosen = {}
    for family in STRENGTHS:
        mine = [r for r in rows if r["label"].startswith(f"{family}: ")]
        chosen[family] = max(mine, key=lambda r: r["score"])["label"] if mine else None
    return chosen


def kept_lines(rows: list[dict], chosen: dict[str, str | None]) -> list[str]:
    """Per family, the kept strength and whether it scores above "neither"; then what goes on to the
    external-validity page: the kept strengths that beat "neither" and differ from the paper's."""
    score = {r["label"]: r["score"] for r in rows}
    if NONE not in score:
        return []
    lines, carried = [], []
    for family, arm in chosen.items():
        if arm is None:
            continue
        above = score[arm] > score[NONE]
        values = {"family": family, "arm": arm}
        if above:
            values["margin"] = f"{100 * (score[arm] - score[NONE]):.1f}"
        lines.append(fill(PHRASES["kept_above" if above else "kept_below"], values))
        if above and not arm.endswith(": paper"):
            carried.append(arm)
    ending = fill(PHRASES["carried"], {"arms": ", ".join(carried)}) if carried else PHRASES["none_carried"]
    return [" ".join(lines + [ending])]


def table(rows: list[dict], chosen: dict[str, str | None]) -> list[str]:
    """The markdown table of the scores, the picks marked."""
    lines = ["| arm | validation % | Sartaj % | mean of the two % | kept |", "|---|---:|---:|---:|:---:|"]
    kept = set(chosen.values())
    for r in rows:
        cells = [f"{100 * r[k]:.2f}" for k in ("val", "sartaj", "score")]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {'yes' if r['label'] in kept else ''} |")
    return lines


def plot_scores(path: Path, rows: list[dict], chosen: dict[str, str | None]) -> Path:
    """Sartaj accuracy against validation accuracy, one point per arm, the kept strengths ringed."""
    fig = new_figure(5.6, 4.2)
    ax = fig.subplots()
    for r in rows:
        ax.scatter(100 * r["val"], 100 * r["sartaj"], s=30, color="black" if r["label"] == NONE else None)
        point = (100 * r["val"], 100 * r["sartaj"])
        ax.annotate(r["label"], point, fontsize=7, xytext=(4, 3), textcoords="offset points")
        if r["label"] in chosen.values():
            ax.scatter(100 * r["val"], 100 * r["sartaj"], s=160, facecolors="none", edgecolors="black")
    ax.set_xlabel("validation accuracy %")
    ax.set_ylabel("Sartaj accuracy %")
    ax.margins(x=0.2, y=0.1)  # room for the labels
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def main(argv: list[str]) -> None:
    """Train every arm at every seed, then write docs/results/intensity_strength/."""
    args = experiment_args(__doc__, argv)
    if args.external in (None, "", "none"):
        raise SystemExit("error: tuning on Sartaj needs --external (a folder holding sartaj/)")
    recipe = {"tiny": RECIPES["tiny"], "cpu": read_toml(recipe_path("resnet18_128px")), "gpu": RECIPES["gpu"]}
    full = base_config(args, recipe[args.scale])
    # the stand-in's size and epochs come before the command line's, so that --epochs and --smoke still act
    base = base_config(args, recipe[args.scale] | STAND_IN.get(args.scale, {}))
    base = replace(base, external=str(sartaj_only(Path(args.external), args.runs_dir)))
    summaries = run_experiment(NAME, args, arms_for(base))
    out = output_dir(NAME, args, summaries)
    # Br35H is what the tuned arms are judged on later. The runs never score it; older records lose it here.
    summaries = [without_br35h(arm) | {"seeds": [without_br35h(s) for s in arm["seeds"]]} for arm in summaries]
    rows = scores(summaries)
    chosen = picks(rows)
    figures = []
    if rows:
        plot_scores(out / "scores.png", rows, chosen)
        figures = [(PHRASES["caption"], "scores.png")]
    notes = [
        fill(PHRASES["table"], {"table": "\n".join(table(rows, chosen))}),
        PHRASES["rule"],
        *kept_lines(rows, chosen),
    ]
    share = planned_cost(base) / planned_cost(full)
    values = {"size": base.image_size, "epochs": base.epochs, "share": f"{share:.2f}", "seeds": args.seeds}
    about = fill(PHRASES["about"], values)
    extra = {"scores": rows, "kept": chosen}
    write_results(out, NAME, PHRASES["title"], about, args, argv, summaries, figures, [n for n in notes if n], extra)


if __name__ == "__main__":
    main(sys.argv[1:])
