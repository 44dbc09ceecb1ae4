"""External validity: the CPU recipe scored on Testing (full and leak-free) and on MRI slices from
two other collections that share no image with brain-tumor-mri/ (../shared/data/external/), then
arms that try to close the gap between the two:

  photometric  per-image gamma, contrast, brightness, blur and noise (what another scanner changes)
  head crop    every image cropped to the head's bounding box first, so framing carries less of the label
  weak labels  half of Br35H's tumour slices (fixed by a hash of each file name) added to training
               as "a tumour, type unknown"
               with the partial-label loss -log(p_glioma + p_meningioma + p_pituitary)
  all three    the three together

Br35H tumour sensitivity is reported on the slices no arm trained on, nor on a near copy of (the same
for every arm),
Sartaj accuracy on all its glioma and pituitary slices.

    python experiments/external_validity.py --scale cpu    # the CPU recipe (128 px, 22 epochs), 3 seeds
    python experiments/external_validity.py --scale gpu    # ResNet50 at 224 px
    python experiments/external_validity.py --scale tiny   # a smoke test on generated images
"""

import hashlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from resnet_scratch.config import read_toml, recipe_path
from resnet_scratch.data import load_folder
from resnet_scratch.data.transforms import eval_resize
from resnet_scratch.experiment import Arm
from resnet_scratch.experiment_cli import (
    RECIPES,
    base_config,
    experiment_args,
    output_dir,
    run_experiment,
)
from resnet_scratch.experiment_pages import fill, plot_test_accuracy, pm, read_phrases, seed_bars, write_results
from resnet_scratch.experiment_stats import mean_std, noise_margin
from resnet_scratch.report import new_figure, save_figure
from resnet_scratch.studies.brain_mri import weak_held_out

NAME = "external_validity"
RECIPE_FILE = recipe_path("main_cpu")
SARTAJ, BR35H = "sartaj", "br35h-tumour"
GOALS = {"br35h_sensitivity": 0.90, "sartaj_accuracy": 0.85, "test_accuracy": 0.975}
# The page's words; this script decides the goals' verdicts and fills in the figures.
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "external_validity.md")


def arms_for(base, external: Path) -> list[Arm]:
    """The recipe, each remedy alone, and the three together."""
    weak = str((external / BR35H).absolute())  # not relative: brain_mri.weak_folder would join it to external again
    return [
        Arm("recipe", base),
        Arm("photometric", replace(base, photometric=True)),
        Arm("head crop", replace(base, head_crop=True)),
        Arm("weak labels", replace(base, weak_tumour=weak)),
        Arm("all three", replace(base, photometric=True, head_crop=True, weak_tumour=weak)),
    ]


def held_out_files(external: Path, arms: list[Arm]) -> set[str]:
    """Br35H's files that no weak-label arm trains on, nor on a near copy of (studies.brain_mri.weak_held_out), as
    paths relative to its folder: the set every arm is scored on."""
    folder = external / BR35H
    # A checkpoint scores its own held-out part, whose near-duplicate groups are drawn on the images as it
    # preprocesses them (evaluate), so the set is what is held out under every weak-label arm's look. 128 px
    # without head crop is the look the recorded seeds' set was first drawn at; dropping it changes the set.
    looks = {(128, False)} | {
        (eval_resize(arm.config.input_size), arm.config.head_crop) for arm in arms if arm.config.weak_tumour
    }
    held_out = None
    for side, head_crop in sorted(looks):
        split = load_folder(folder, size=(side, side), head_crop=head_crop)
        files = {str(Path(p).relative_to(folder)) for p, held in zip(split.paths, weak_held_out(split)) if held}
        held_out = files if held_out is None else held_out & files
    return held_out


def files_hash(files: set[str]) -> str:
    """16 hex digits naming a set of files, to tell whether two figures were computed on the same slices."""
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:16]


def held_out_sensitivity(external: dict, held_out: set[str]) -> dict[str, object] | None:
    """Br35H tumour sensitivity on the held-out files, from a run's per-image predictions (the
    "external" part of its metrics.json); None if the run did not score Br35H."""
    scored = external.get(BR35H)
    if scored is None:
        return None
    missing = held_out - set(scored["predictions"])
    if missing:
        raise ValueError(f"a run's Br35H predictions lack {len(missing)} held-out files, e.g. {sorted(missing)[0]}")
    tumour = sum(1 for p in held_out if scored["predictions"][p] != "notumor")
    return {"value": tumour / max(len(held_out), 1), "images": len(held_out), "files": files_hash(held_out)}


def with_external_figures(summaries: list[dict], runs_dir: Path, held_out: set[str]) -> list[dict]:
    """Copies of the summaries whose seeds hold what the page needs from their run's per-image external
    results (Br35H sensitivity on `held_out`, Sartaj's per-class recall), kept in results.json so that the
    page can be remade where the runs are gone. A seed without its run must have them recorded, on the
    same held-out files."""
    kept = []
    tag = files_hash(held_out)  # once: every recorded seed is checked against it
    for arm in summaries:
        seeds = []
        for seed in arm["seeds"]:
            metrics = runs_dir / seed["run"] / "metrics.json"
            if "diverged" in seed:
                pass  # no figures to add
            elif metrics.is_file():
                external = json.loads(metrics.read_text()).get("external", {})
                seed = seed | {
                    "br35h_held_out": held_out_sensitivity(external, held_out),
                    "sartaj_recall": external[SARTAJ]["recall"] if SARTAJ in external else None,
                }
            elif "br35h_held_out" not in seed or "sartaj_recall" not in seed:
                raise ValueError(
                    f"{arm['label']}: {seed['run']} is neither in {runs_dir} nor recorded with its figures"
                )
            elif seed["br35h_held_out"] and seed["br35h_held_out"].get("files") != tag:
                raise ValueError(
                    f"{arm['label']}: {seed['run']} was scored on other Br35H slices than the {len(held_out)} held "
                    "out now (a look or an arm changed): train it again"
                )
            seeds.append(seed)
        kept.append(arm | {"seeds": seeds})
    return kept


def external_figures(summaries: list[dict]) -> list[dict]:
    """Per arm: Sartaj accuracy and per-class recall, Br35H sensitivity on the held-out slices (and on
    all 703 where the arm did not train on any of them), each mean +- std over seeds."""
    rows = []
    for arm in summaries:
        seeds = [s for s in arm["seeds"] if "diverged" not in s]
        row = {"label": arm["label"], "seeds": len(seeds)}
        if seeds and all(s["sartaj_recall"] for s in seeds):
            row["sartaj_accuracy"] = mean_std([s["external"][SARTAJ]["value"] for s in seeds])
            row["sartaj_recall"] = {
                c: mean_std([s["sartaj_recall"][c] for s in seeds]) for c in seeds[0]["sartaj_recall"]
            }
            row["sartaj_images"] = seeds[0]["external"][SARTAJ]["images"]
        if seeds and all(s["br35h_held_out"] for s in seeds):
            row["br35h_sensitivity"] = mean_std([s["br35h_held_out"]["value"] for s in seeds])
            row["br35h_images"] = seeds[0]["br35h_held_out"]["images"]
            if not arm["settings"]["weak_tumour"]:
                row["br35h_all_sensitivity"] = mean_std([s["external"][BR35H]["value"] for s in seeds])
        if seeds:
            row["test_accuracy"] = arm["test_accuracy"]
            row["leak_free_accuracy"] = arm["leak_free_accuracy"]
        rows.append(row)
    return rows


def external_table(rows: list[dict]) -> list[str]:
    """The markdown table of Testing and external figures per arm."""
    lines = [
        "| arm | Testing full % | Testing leak-free % | Sartaj accuracy % | Sartaj glioma / pituitary recall % "
        "| Br35H tumour sensitivity %, held out | Br35H, all 703 % | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        recall = r.get("sartaj_recall", {})
        cells = [
            r["label"],
            pm(r.get("test_accuracy")),
            pm(r.get("leak_free_accuracy")),
            pm(r.get("sartaj_accuracy")),
            " / ".join(pm(recall[c], digits=1) for c in recall) or "-",
            pm(r.get("br35h_sensitivity")),
            pm(r.get("br35h_all_sensitivity")),
            str(r["seeds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def weak_label_caveat(rows: list[dict]) -> list[str]:
    """What the weak-label arms' Br35H figure shows and what it does not, with the sampling noise of
    Sartaj, the one set no arm trains on (no text before any arm has been scored on Sartaj)."""
    n = next((r["sartaj_images"] for r in rows if "sartaj_images" in r), 0)
    if not n:
        return []
    return [fill(PHRASES["weak_label_caveat"], {"slices": n, "margin": f"{noise_margin(0.15, n):.1f}"})]


def goal_notes(rows: list[dict], seeds: int) -> list[str]:
    """For each arm, which goal (mean of the seeds) is met and how far each other one is, and at how many
    of the `seeds` the goals are judged (they are set on the mean of all of them)."""
    notes = []
    for r in rows:
        parts = []
        for key, goal in GOALS.items():
            if key not in r:
                continue
            value = r[key]["mean"]
            met = value >= goal
            verdict = PHRASES["met"] if met else fill(PHRASES["short"], {"points": f"{100 * (goal - value):.2f}"})
            if r["seeds"] < seeds:
                verdict += " " + fill(PHRASES["so_far"], {"done": r["seeds"], "seeds": seeds})
            values = {"name": PHRASES[f"name_{key}"], "value": f"{100 * value:.2f}", "goal": f"{100 * goal:.1f}"}
            parts.append(fill(PHRASES["goal"], values | {"verdict": verdict}))
        if parts:
            notes.append(fill(PHRASES["goal_of_an_arm"], {"arm": r["label"], "goals": "; ".join(parts)}))
    return notes


def differences_table(rows: list[dict]) -> list[str]:
    """Each arm's figures minus the recipe's (the first row), in points, over the seeds both ran (the
    first k of each): which set a remedy moves and which it leaves."""
    base = rows[0]
    keys = [("test_accuracy", "Testing (full)"), ("sartaj_accuracy", "Sartaj accuracy")]
    keys += [(f"sartaj_recall.{c}", f"Sartaj {c} recall") for c in base.get("sartaj_recall", {})]
    keys += [("br35h_sensitivity", "Br35H held out")]

    def values(row: dict, key: str) -> list[float] | None:
        name, _, cls = key.partition(".")
        stat = row.get(name, {}).get(cls) if cls else row.get(name)
        return None if stat is None else stat["values"]

    lines = [
        fill(PHRASES["differences"], {"base": base["label"]}),
        "",
        "| arm | " + " | ".join(name for _, name in keys) + " | seeds |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    for r in rows[1:]:
        cells, k = [], min(r["seeds"], base["seeds"])
        for key, _ in keys:
            a, b = values(r, key), values(base, key)
            cells.append("-" if not a or not b else f"{100 * (np.mean(a[:k]) - np.mean(b[:k])):+.1f}")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {k} |")
    return lines


def plot_external(path: Path, rows: list[dict]) -> Path:
    """Per arm: Testing (full), Sartaj accuracy and Br35H sensitivity (held out), a dot per seed."""
    done = [r for r in rows if "sartaj_accuracy" in r and "br35h_sensitivity" in r]
    fig = new_figure(max(7, 2.0 * len(done)), 4)
    ax = fig.subplots()
    x = np.arange(len(done))
    keys = (
        ("test_accuracy", "Testing (full)"),
        ("sartaj_accuracy", "Sartaj accuracy"),
        ("br35h_sensitivity", "Br35H tumour sensitivity (held out)"),
    )
    for k, (key, name) in enumerate(keys):
        seed_bars(ax, x + (k - 1) * 0.27, [[100 * v for v in r[key]["values"]] for r in done], 0.25, name)
    for key, goal in GOALS.items():
        ax.axhline(100 * goal, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xticks(x, [r["label"] for r in done])
    ax.set_ylim(0, 100)
    ax.set(ylabel="%", title="In distribution and out of it (bars: mean ± std; dots: seeds; dotted: the goals)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    return save_figure(fig, path)


def main(argv: list[str]) -> None:
    """Train every arm at every seed, then write docs/results/external_validity/."""
    args = experiment_args(__doc__, argv)
    if args.external in (None, "", "none"):
        raise SystemExit("error: external validity needs --external (a folder holding sartaj/ and br35h-tumour/)")
    external = Path(args.external)
    recipe = {"tiny": RECIPES["tiny"], "cpu": read_toml(RECIPE_FILE), "gpu": RECIPES["gpu"] | {"model": "resnet50"}}
    recipe = recipe[args.scale]
    base = base_config(args, recipe)
    arms = arms_for(base, external)
    summaries = run_experiment(NAME, args, arms)
    out = output_dir(NAME, args, summaries)
    held_out = held_out_files(external, arms)
    summaries = with_external_figures(summaries, args.runs_dir, held_out)
    rows = external_figures(summaries)
    plot_external(out / "external.png", rows)
    plot_test_accuracy(out / "test_accuracy.png", summaries)
    figures = [(PHRASES[f"caption_{f}"], f"{f}.png") for f in ("external", "test_accuracy")]
    for arm in (summaries[0], summaries[-1]):  # the recipe's and the combined arm's mistakes, first seed
        if not arm["seeds"]:
            continue
        run = args.runs_dir / arm["seeds"][0]["run"]
        for name in (BR35H, SARTAJ):
            source = run / f"errors-{name}.png"
            file = f"errors-{arm['label'].replace(' ', '_')}-{name}.png"
            if source.is_file():
                shutil.copy(source, out / file)
            if (out / file).is_file():  # copied now, or when a recorded run was trained
                figures.append((fill(PHRASES["caption_mistakes"], {"arm": arm["label"], "set": name}), file))
    notes = [
        fill(PHRASES["table"], {"table": "\n".join(external_table(rows))}),
        PHRASES["same_recipe"],
        fill(PHRASES["held_out"], {"slices": len(held_out)}),
        PHRASES["recorded"],
        *weak_label_caveat(rows),
        "\n".join([PHRASES["goals"]] + goal_notes(rows, args.seeds)),
        "\n".join(differences_table(rows)),
    ]
    # Br35H only in the table above: the runs' own figures are on different slices (all 703, or a weak-label
    # run's own held-out part), the table's on the held-out slices.
    summaries = [
        arm | {"external": {k: v for k, v in arm.get("external", {}).items() if k != BR35H}} for arm in summaries
    ]
    write_results(
        out, NAME, PHRASES["title"], PHRASES["about"], args, argv, summaries, figures, notes, {"external": rows}
    )


if __name__ == "__main__":
    main(sys.argv[1:])
