"""Time to accuracy on the CPU: which changes to a recipe buy accuracy per unit of compute. Compute is
counted in multiply-adds (resnet_scratch/cost.py), a measure no machine changes, relative to the 128 px
recipe's (recipes/resnet18_128px.toml); wall minutes and img/s of the day are given beside it.

A few arms change one lever of the 128 px recipe. The issue's probe changes several levers at once;
"fixed-crop probe" crops it as the issue's own loop did. Trained for 22 epochs, that probe was the main
job before this study's last arms. They set one lever on it or take one off; it costs a quarter of
the reference. One of them, progressive resizing, is the main job now (recipes/main_cpu.toml). Flip TTA
at test is no arm: it trains nothing, and scores the main job's checkpoints again with flips. Every
arm is scored on Testing (full and leak-free) and on the external sets. The 128 px recipe is
external_validity.py's "recipe", and "per-image std" is its arm of that name: the seeds that page
records are reused, not trained again.

    python experiments/time_to_accuracy.py --scale cpu              # every arm, 3 seeds
    python experiments/time_to_accuracy.py --scale cpu --arms "64 px,12 epochs"
    python experiments/time_to_accuracy.py --scale tiny             # a smoke test on generated images
"""

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np

from resnet_scratch.config import Config, read_toml, recipe_path
from resnet_scratch.cost import planned_cost
from resnet_scratch.evaluate import evaluate_checkpoint, external_sets
from resnet_scratch.experiment import Arm, finished
from resnet_scratch.experiment_cli import (
    RECIPES,
    base_config,
    experiment_args,
    output_dir,
    run_experiment,
)
from resnet_scratch.experiment_pages import fill, plot_test_accuracy, pm, read_phrases, write_results
from resnet_scratch.experiment_stats import external_headline, mean_std
from resnet_scratch.report import new_figure, save_figure
from resnet_scratch.studies.brain_mri import BrainMRI

NAME = "time_to_accuracy"
# The unit of cost and the arm every lever is first set against (recipes/resnet18_128px.toml).
REFERENCE = "128 px recipe"
FIXED22 = "fixed-crop probe at 22 epochs"
# The arm that `make train` trains (recipes/main_cpu.toml; a test holds the two to the same settings).
MAIN_JOB = f"{FIXED22} + progressive resizing"
# Levers tried on FIXED22 (the main job when they were added) are set against it.
ON_PROBE = (
    "+ EMA",
    "+ zero-init residual",
    "in colour",
    "with the reference's crops",
    "+ progressive resizing",
    "on 96 px images",
)
LEVERS_ON_PROBE = tuple(f"{FIXED22} {change}" for change in ON_PROBE)
FLIP, FLIP_KEY = "flip TTA at test", "flip_at_test"
# The cheap goal, on Testing (3-seed means) at a cost of at most CHEAP of the reference's.
GOALS = {"test_accuracy": 0.985, "leak_free_accuracy": 0.98}
CHEAP = 0.25
SARTAJ, BR35H = "sartaj", "br35h-tumour"
EMA_DECAY = 0.998  # per step: an average over the last ~500 steps, about 6 epochs of the 128 px recipe
FIXED_CROP = round((64 / 72) ** 2, 3)  # the area of a 64 px crop of a 72 px image
# how a lever_verdict reads in a sentence
SPREAD_WORDS = {
    "yes: better": "better, beyond the seed spread",
    "yes: worse": "worse, beyond the seed spread",
    "no": "within the seed spread",
    "too few seeds": "on too few seeds to judge",
}
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "time_to_accuracy.md")


def arms_for(base: Config) -> list[Arm]:
    """The 128 px recipe (`base`), three levers alone, then the issue's probe (grey, per-image std, milder
    crops, 64 px, 12 epochs: several levers at once), and the probe with its loop's fixed-size crops, for
    12 epochs and for the reference's 22 (FIXED22). Last, six levers set on or taken off FIXED22, a
    quarter of the reference's cost; one of them is the main job (MAIN_JOB)."""
    probe = replace(base, grey=True, normalize="image", crop_scale_min=0.6, image_size=64, epochs=12)
    # The issue's own probe resized to 72 px and cropped 64 px: one size, square, only the place drawn.
    fixed = replace(probe, crop_scale_min=FIXED_CROP, crop_scale_max=FIXED_CROP, crop_ratio_max=1)
    fixed22 = replace(fixed, epochs=base.epochs)
    crops = {k: getattr(base, k) for k in ("crop_scale_min", "crop_scale_max", "crop_ratio_max")}
    on_probe = [
        replace(fixed22, ema=EMA_DECAY),
        replace(fixed22, zero_init_residual=True),
        replace(fixed22, grey=False),
        replace(fixed22, **crops),
        # small images first (fast.ai's DAWNBench entries): 48 px, growing towards 64 px in 16 px steps
        replace(fixed22, min_image_size=16 * round(0.75 * fixed22.input_size / 16)),
        replace(fixed22, image_size=96),
    ]
    return [
        Arm(REFERENCE, base),
        Arm("12 epochs", replace(base, epochs=12)),
        Arm("64 px", replace(base, image_size=64)),
        Arm("per-image std", replace(base, normalize="image")),
        Arm("probe", probe),
        Arm("fixed-crop probe", fixed),
        # trained as long as the reference: the cheap goal's whole budget (a quarter of the reference's cost)
        Arm(FIXED22, fixed22),
        *(Arm(label, config) for label, config in zip(LEVERS_ON_PROBE, on_probe, strict=True)),
    ]


def crop_range(config: Config) -> str:
    """The share of a slice's area that a random crop keeps, as words."""
    return f"{config.crop_scale_min:.0%} to {config.crop_scale_max:.0%}"


def about_values(arms: list[Arm]) -> dict[str, object]:
    """The settings that the page's introduction names, read from the arms themselves."""
    config = {arm.label: arm.config for arm in arms}
    base = config[REFERENCE]
    main, resized = config[FIXED22], config[f"{FIXED22} + progressive resizing"]
    larger = config[f"{FIXED22} on 96 px images"]
    return {
        "size": base.image_size,
        "epochs": base.epochs,
        "cheap": CHEAP,
        "ema": EMA_DECAY,
        "main": f'"{MAIN_JOB}"',
        "crops": crop_range(base),
        "mild": crop_range(config["probe"]),
        "ratio": f"{1 / base.crop_ratio_max:.2f} to {base.crop_ratio_max:.2f}",
        "levers": len(LEVERS_ON_PROBE),
        "small": resized.min_image_size,
        "size_main": resized.input_size,
        "n_small": sum(resized.epoch_size(e) < resized.input_size for e in range(1, resized.epochs + 1)),
        "n_large": sum(resized.epoch_size(e) == resized.input_size for e in range(1, resized.epochs + 1)),
        "larger": f"{(larger.input_size / main.input_size) ** 2:.2f}",
    }


def flip_scores(run: Path, base: Config) -> dict:
    """A finished run's chosen checkpoint scored by `evaluate` without and then with flip TTA (each image's
    logits averaged with those of its left-right mirror image): Testing full and leak-free, the external
    sets, and the Testing images whose answer the flip made right or wrong. Both scorings go through the
    same code, so the difference is the flip's alone. Each is kept in the run folder and reused."""
    scored, answers = {}, {}
    for flip, folder in ((False, "evaluation-noflip"), (True, "evaluation-flip")):
        out = run / folder
        if not (out / "metrics.json").is_file():
            print(f"[{FLIP}] scoring {run / 'best.safetensors'} {'with' if flip else 'without'} flips", flush=True)
            sets = [Path(base.data), *external_sets(base.external)]
            evaluate_checkpoint(run / "best.safetensors", sets, BrainMRI(), out, tta_flip=flip)
        metrics = json.loads((out / "metrics.json").read_text())
        scored[flip] = {"test_accuracy": metrics["test"]["accuracy"]}
        scored[flip]["leak_free_accuracy"] = metrics["test_leak_free"]["accuracy"]
        scored[flip] |= {name: external_headline(r)["value"] for name, r in metrics["external"].items()}
        with open(out / "predictions.csv") as f:
            rows = [r for r in csv.DictReader(f) if Path(r["path"]).parent.parent.name == "Testing"]
        answers[flip] = {r["path"]: r["predicted"] == r["true"] for r in rows}
    if answers[False].keys() != answers[True].keys():
        raise ValueError(f"{run}: the two scorings saw different Testing images")
    fixed = sum(answers[True][p] and not answers[False][p] for p in answers[False])
    broken = sum(answers[False][p] and not answers[True][p] for p in answers[False])
    return {"without": scored[False], "with": scored[True], "fixed": fixed, "broken": broken}


def flip_at_test(main: dict, base: Config, runs_dir: Path, record: Path) -> dict | None:
    """Flip TTA on the main job's own checkpoints, seed by seed (flip_scores), and the paired change's
    mean +- std. No run is trained. A seed whose run is gone keeps what `record` holds for the same run."""
    recorded = json.loads(record.read_text()).get("extra", {}).get(FLIP_KEY, {}) if record.is_file() else {}
    old = {s["run"]: s for s in recorded.get("seeds", [])}
    seeds = []
    for seed in (s for s in main["seeds"] if "diverged" not in s):
        run = runs_dir / seed["run"]
        if finished(run):
            seeds.append({"run": seed["run"], "seed": seed["seed"]} | flip_scores(run, base))
        elif seed["run"] in old:
            seeds.append(old[seed["run"]])
    if not seeds:
        return None
    keys = seeds[0]["with"].keys()
    change = {key: mean_std([s["with"][key] - s["without"][key] for s in seeds]) for key in keys}
    means = {side: {key: mean_std([s[side][key] for s in seeds]) for key in keys} for side in ("without", "with")}
    return {"seeds": seeds, "change": change} | means


def seeds_text(n: int) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} seed" + ("" if n == 1 else "s")


def flip_lines(flip: dict | None) -> list[str]:
    """The page's paragraph and table on flip TTA at test: without, with, and the paired change."""
    if flip is None:
        return []
    names = [("test_accuracy", "Testing full"), ("leak_free_accuracy", "Testing leak-free")]
    names += [
        (key, name) for key, name in ((SARTAJ, "Sartaj"), (BR35H, "Br35H tumours found")) if key in flip["change"]
    ]
    lines = ["| " + " | ".join(["main job's checkpoints"] + [f"{name} %" for _, name in names]) + " |"]
    lines.append("|---" + "|---:" * len(names) + "|")
    for side, title in (("without", "without flips"), ("with", "with flips"), ("change", "change (paired)")):
        cells = [pm(flip[side][key]) for key, _ in names]
        if side == "change":  # signed: a loss must read as one
            cells = [f"{100 * flip[side][key]['mean']:+.2f} ± {100 * flip[side][key]['std']:.2f}" for key, _ in names]
        lines.append("| " + " | ".join([title] + cells) + " |")
    fixed, broken = sum(s["fixed"] for s in flip["seeds"]), sum(s["broken"] for s in flip["seeds"])
    values = {"seeds": seeds_text(len(flip["seeds"])), "fixed": fixed, "broken": broken, "table": "\n".join(lines)}
    # judged as a lever: the paired changes against the spread of the scores without flips
    changes = [s["with"]["test_accuracy"] - s["without"]["test_accuracy"] for s in flip["seeds"]]
    values["how"] = SPREAD_WORDS[lever_verdict(changes, flip["without"]["test_accuracy"]["std"])]
    return [fill(PHRASES["flip"], values)]


def not_run_lines(summaries: list[dict]) -> list[str]:
    """The page's sentence naming the arms without a finished run: their levers are not measured."""
    missing = [arm["label"] for arm in summaries if not arm["finished"]]
    return [fill(PHRASES["not_run"], {"arms": ", ".join(f'"{label}"' for label in missing)})] if missing else []


def arm_rows(summaries: list[dict]) -> list[dict]:
    """Per finished arm: its planned cost, Testing (full, leak-free), Sartaj and Br35H (all 703 slices:
    no arm trains on them), wall minutes and img/s, each mean +- std over seeds."""
    rows = []
    for arm in summaries:
        seeds = [s for s in arm["seeds"] if "diverged" not in s]
        if not seeds:
            continue
        # measured where every seed counted its multiply-adds, else what the settings plan on the full dataset
        if "cost" in arm:
            cost = arm["cost"]["mean"]
        else:
            cost = planned_cost(
                Config(**{k: v for k, v in arm["settings"].items() if k in Config.__dataclass_fields__})
            )
        row = {"label": arm["label"], "cost": cost, "seeds": len(seeds)}
        row["by_seed"] = {  # for pairing with the main job by seed number
            s["seed"]: {key: s[key] for key in ("test_accuracy", "leak_free_accuracy")}
            | {name: s["external"][name]["value"] for name in (SARTAJ, BR35H) if name in s.get("external", {})}
            for s in seeds
        }
        row |= {key: arm[key] for key in ("test_accuracy", "leak_free_accuracy")}
        for name in (SARTAJ, BR35H):
            if all(name in s.get("external", {}) for s in seeds):
                row[name] = mean_std([s["external"][name]["value"] for s in seeds])
        row["minutes"] = mean_std([s["training_seconds"] / 60 for s in seeds])
        row["images_per_s"] = arm["images_per_s"]
        rows.append(row)
    return rows


def table(rows: list[dict]) -> list[str]:
    """The markdown table of the arms, cheapest first."""
    lines = [
        "| arm | cost | Testing full % | Testing leak-free % | Sartaj % | Br35H tumours found % | minutes | img/s "
        "| seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r["cost"]):
        cells = [r["label"], f"{r['cost']:.2f}", pm(r["test_accuracy"]), pm(r["leak_free_accuracy"])]
        cells += [pm(r.get(SARTAJ)), pm(r.get(BR35H)), pm(r["minutes"], False, 1), pm(r["images_per_s"], False, 0)]
        lines.append("| " + " | ".join(cells + [str(r["seeds"])]) + " |")
    return lines


def lever_verdict(changes: list[float], spread: float) -> str:
    """Whether an arm's paired changes (one per seed, against the arm it changes) lie beyond the seed
    spread: at least 3 seeds, every one of the same sign, and a mean change larger than that arm's own
    spread over seeds (its sample std)."""
    if len(changes) < 3:
        return "too few seeds"
    if not (all(c > 0 for c in changes) or all(c < 0 for c in changes)) or abs(np.mean(changes)) <= spread:
        return "no"
    return "yes: better" if changes[0] > 0 else "yes: worse"


def against(r: dict, base: dict, key: str) -> dict | None:
    """The arm's change from `base` on `key`, over the seed numbers both ran: mean in points, the
    seeds, and lever_verdict. None where either lacks the figure."""
    seeds = sorted(seed for seed in set(r["by_seed"]) & set(base["by_seed"]) if key in r["by_seed"][seed])
    if not seeds or any(key not in base["by_seed"][seed] for seed in seeds):
        return None
    changes = [r["by_seed"][seed][key] - base["by_seed"][seed][key] for seed in seeds]
    verdict = lever_verdict(changes, mean_std([base["by_seed"][seed][key] for seed in base["by_seed"]])["std"])
    return {"points": f"{100 * np.mean(changes):+.2f}", "seeds": len(seeds), "verdict": verdict}


def base_of(label: str) -> str:
    """The arm that the arm `label` changes: the fixed-crop probe at 22 epochs for the levers tried on it,
    else the reference."""
    return FIXED22 if label in LEVERS_ON_PROBE else REFERENCE


def marked(change: dict | None) -> str:
    """A change in points for a table cell, in bold where it lies beyond the seed spread."""
    if change is None:
        return "-"
    return f"**{change['points']}**" if change["verdict"].startswith("yes") else change["points"]


def lever_lines(rows: list[dict]) -> list[str]:
    """Each arm's figures minus those of the arm it changes (base_of), seed by seed, and whether Testing's
    change is beyond the seed spread; then the cheapest arm not shown worse than the reference on
    Testing, with its external changes judged alike."""
    by_label = {r["label"]: r for r in rows}
    if REFERENCE not in by_label:
        return []
    keys = [("test_accuracy", "Testing"), ("leak_free_accuracy", "leak-free"), (SARTAJ, "Sartaj"), (BR35H, "Br35H")]
    lines = ["| arm | set against | cost | " + " | ".join(f"{n} change" for _, n in keys)]
    lines[0] += " | Testing beyond the spread? | seeds |"
    lines.append("|---|---|---:|" + "---:|" * len(keys) + "---|---:|")
    match = None
    for r in sorted((r for r in rows if r["label"] != REFERENCE), key=lambda r: r["cost"]):
        base = by_label.get(base_of(r["label"]))
        change = {key: against(r, base, key) for key, _ in keys} if base else {}
        test = change.get("test_accuracy")
        if test is None:
            continue
        cells = [r["label"], base["label"], f"{r['cost']:.2f}", *(marked(c) for c in change.values())]
        lines.append("| " + " | ".join(cells + [test["verdict"], str(test["seeds"])]) + " |")
        if base["label"] != REFERENCE:
            continue
        if match is None and test["seeds"] >= 3 and test["verdict"] != "yes: worse" and round(r["cost"], 2) < 1:
            if change[SARTAJ] and change[BR35H]:
                match = (r, change)
    notes = [fill(PHRASES["levers"], {"table": "\n".join(lines)})]
    if match:
        r, change = match
        values = {"arm": r["label"], "cost": f"{r['cost']:.2f}", "seeds": seeds_text(change["test_accuracy"]["seeds"])}
        values |= {"change": change["test_accuracy"]["points"], "how": SPREAD_WORDS[change["test_accuracy"]["verdict"]]}
        for key, slot in ((SARTAJ, "sartaj"), (BR35H, "br35h")):
            values |= {slot: change[key]["points"], f"{slot}_how": SPREAD_WORDS[change[key]["verdict"]]}
        notes.append(fill(PHRASES["cheapest_match"], values))
    return notes


def goal_values() -> dict[str, str]:
    """The cheap goal's percentages as the page writes them."""
    return {"full": f"{100 * GOALS['test_accuracy']:.1f}", "leak_free": f"{100 * GOALS['leak_free_accuracy']:.1f}"}


def meets_cheap_goal(r: dict) -> bool:
    """Whether an arm's means meet the cheap goal. Costs count as the table shows them, to 2 places: a
    seed's validation split moves a few images, and its cost by a few parts in ten thousand."""
    return round(r["cost"], 2) <= CHEAP and all(r[k]["mean"] >= goal for k, goal in GOALS.items())


def goal_notes(rows: list[dict], seeds: int) -> list[str]:
    """Which arms meet the cheap goal, among the arms with every seed asked for (a mean over fewer is
    no 3-seed mean)."""
    met = [r["label"] for r in rows if r["seeds"] >= seeds and meets_cheap_goal(r)]
    goals = goal_values()
    values = goals | {"cost": CHEAP, "seeds": seeds_text(seeds)} | ({"arms": ", ".join(met)} if met else {})
    return [fill(PHRASES["cheap_met" if met else "cheap_missed"], values)]


def loses_outside(r: dict, other: dict) -> bool:
    """Whether an arm loses Sartaj or Br35H beyond the seed spread against `other`; an arm with no seed
    in common with it counts as losing."""
    external = [against(r, other, key) for key in (SARTAJ, BR35H)]
    return any(c is None or c["verdict"] == "yes: worse" for c in external)


def standing(r: dict, by_label: dict[str, dict], seeds: int) -> str | None:
    """Where an arm stands under the rule: "candidate", or why it is none ("reference", "base": it loses
    an external set against the reference or against the arm it changes; "no_gain": a lever on FIXED22
    that neither beats it on Testing beyond the spread nor costs less), or None where it has too few
    seeds, costs more than the reference, or the arm it changes has no record."""
    reference, base = by_label.get(REFERENCE), by_label.get(base_of(r["label"]))
    if r["seeds"] < seeds or round(r["cost"], 2) > 1.0 or reference is None or base is None:
        return None
    if loses_outside(r, reference):
        return "reference"
    if loses_outside(r, base):
        return "base"
    if base is reference:
        return "candidate"
    gain = against(r, base, "test_accuracy")
    # a saving of compute is exact, so it needs no more than accuracy not shown lost
    cheaper = round(r["cost"], 2) < round(base["cost"], 2) and gain is not None and gain["verdict"] == "no"
    return "candidate" if cheaper or (gain is not None and gain["verdict"] == "yes: better") else "no_gain"


def choice_lines(rows: list[dict], seeds: int) -> list[str]:
    """The issue's rule for the main job, applied to the record, and whether `make train` (MAIN_JOB)
    trains the arm it picks. The candidates (standing): the arms with every seed at a cost of at most
    the reference's, whose Sartaj and Br35H are not shown worse than the reference's, nor than those of
    the arm they change; a lever tried on FIXED22 only where it beats FIXED22 on Testing beyond the
    seed spread, or costs less without a loss beyond it. Where some candidates meet the cheap goal,
    only they stay. The most accurate on Testing leads, and the cheapest candidate not shown worse than
    it on Testing is picked: a gap within the seed spread does not buy compute."""
    by_label = {r["label"]: r for r in rows}
    reference = by_label.get(REFERENCE)
    if reference is None:
        return []
    status = {r["label"]: standing(r, by_label, seeds) for r in rows}
    candidates = [r for r in rows if status[r["label"]] == "candidate"]
    dropped = {
        why: ", ".join(f'"{short(label)}"' for label, s in status.items() if s == why)
        for why in ("reference", "base", "no_gain")
    }
    cheap = [r for r in candidates if meets_cheap_goal(r)]
    candidates = cheap or candidates
    if not candidates:
        return []
    lead = max(candidates, key=lambda r: r["test_accuracy"]["mean"])
    level = [
        r for r in candidates if r is lead or against(r, lead, "test_accuracy")["verdict"] in ("no", "yes: better")
    ]
    best = min(level, key=lambda r: r["cost"])
    below = [f'"{r["label"]}"' for r in candidates if r not in level]
    values = {"below": " " + fill(PHRASES["below"], {"arms": ", ".join(below)}) if below else ""}
    values |= {
        why: " " + fill(PHRASES[f"dropped_{why}"], {"arms": arms}) if arms else "" for why, arms in dropped.items()
    }
    values |= {"arm": best["label"], "accuracy": pm(best["test_accuracy"]), "cost": f"{best['cost']:.2f}"}
    values |= {
        "seeds": seeds_text(seeds),
        "lead": lead["label"],
        "goal": PHRASES["goal_cheap" if cheap else "goal_best"],
    }
    for key, slot in (("test_accuracy", "test"), (SARTAJ, "sartaj"), (BR35H, "br35h")):
        change = against(best, reference, key)
        values |= {slot: change["points"], f"{slot}_how": SPREAD_WORDS[change["verdict"]]}
    trained = (
        fill(PHRASES["choice_not_yet"], {"main": MAIN_JOB}) if best["label"] != MAIN_JOB else PHRASES["choice_trained"]
    )
    return [fill(PHRASES["choice"], values), trained]


def short(label: str) -> str:
    """An arm's name in a figure: the fixed-crop probe at 22 epochs, in its own label and in its levers',
    as FCP-22, since the long labels overlap."""
    return label.replace(FIXED22, "FCP-22")


def plot_cost(path: Path, rows: list[dict], flip: dict | None = None) -> Path:
    """Testing accuracy (full split) against cost: a point per arm with its seed spread, the main job
    a star and the reference a square, the main job's checkpoints with flip TTA as a hollow star, and
    the cheap goal's corner shaded."""
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    # more arms than the shared palette holds; tab20's even colours first, as its odd ones pair with them
    colours = [matplotlib.colormaps["tab20"](k) for k in [*range(0, 20, 2), *range(1, 20, 2)]]
    main = next((r for r in rows if r["label"] == MAIN_JOB), None)
    if flip is not None and main is not None:
        # the paired change added to the main job's mean: the flip's own seeds may be fewer than the main job's
        change = flip["change"]["test_accuracy"]
        ax.errorbar(
            0.94 * main["cost"],  # beside the main job's star
            100 * (main["test_accuracy"]["mean"] + change["mean"]),
            yerr=100 * change["std"],
            fmt="*",
            markersize=12,
            capsize=3,
            markerfacecolor="none",
            color="black",
            label=f"main job + flip TTA's paired change ({seeds_text(len(flip['seeds']))})",
        )
    marks = {MAIN_JOB: ("*", 12, " (main job)"), REFERENCE: ("s", 8, " (the unit of cost)")}
    # arms of one cost (to 2 places) side by side, 3% apart, not on top of each other; a marked arm at its own cost
    drawn = {round(r["cost"], 2): 0 for r in rows if r["label"] in marks}
    for i, r in enumerate(rows):
        stat = r["test_accuracy"]
        marker = marks.get(r["label"])
        k = 0 if marker else drawn.setdefault(round(r["cost"], 2), -1) + 1
        drawn[round(r["cost"], 2)] = max(k, drawn.get(round(r["cost"], 2), 0))
        x = r["cost"] * 1.03**k
        ax.errorbar(
            x,
            100 * stat["mean"],
            yerr=100 * stat["std"],
            fmt=marker[0] if marker else "o",
            markersize=marker[1] if marker else 6,
            capsize=3,
            color="black" if marker else colours[i % len(colours)],
            label=short(r["label"]) + (marker[2] if marker else ""),
        )
        ax.plot([x] * len(stat["values"]), [100 * v for v in stat["values"]], "k.", markersize=3)
    ax.axvspan(0, CHEAP, ymin=0, ymax=1, color="green", alpha=0.06)
    ax.axhline(100 * GOALS["test_accuracy"], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xticks([0.1, 0.25, 0.5, 1.0], ["0.1", "0.25", "0.5", "1"])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="training cost (multiply-adds, 128 px recipe = 1)", ylabel="Testing accuracy % (axis not from 0)")
    ax.set_title(
        "Accuracy against compute (marker: mean ± std; dots: seeds)\n"
        f"shaded: the cheap goal's costs; dotted: its {100 * GOALS['test_accuracy']:.1f}% on Testing",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    return save_figure(fig, path)


def main(argv: list[str]) -> None:
    """Train every arm at every seed, then write docs/results/time_to_accuracy/."""
    args = experiment_args(__doc__, argv)
    recipe = {"tiny": RECIPES["tiny"], "cpu": read_toml(recipe_path("resnet18_128px")), "gpu": RECIPES["gpu"]}
    base = base_config(args, recipe[args.scale])
    arms = arms_for(base)
    summaries = run_experiment(NAME, args, arms, borrow=("external_validity",))
    out = output_dir(NAME, args, summaries)
    main_job = next(arm for arm in summaries if arm["label"] == MAIN_JOB)
    flip = flip_at_test(main_job, base, args.runs_dir, out / "results.json")
    rows = arm_rows(summaries)
    figures = []
    if rows:
        plot_cost(out / "cost.png", rows, flip)
        plot_test_accuracy(out / "test_accuracy.png", [s | {"label": short(s["label"])} for s in summaries])
        figures = [(PHRASES["caption_cost"], "cost.png"), (PHRASES["caption_test_accuracy"], "test_accuracy.png")]
    notes = [fill(PHRASES["table"], {"table": "\n".join(table(rows))}), *not_run_lines(summaries), PHRASES["cost"]]
    notes += flip_lines(flip)
    notes += lever_lines(rows) + goal_notes(rows, args.seeds) + choice_lines(rows, args.seeds)
    # by_seed repeats the arms' own seeds: the record keeps them once
    extra = {
        "arms": [{k: v for k, v in r.items() if k != "by_seed"} | {"cost": float(np.round(r["cost"], 4))} for r in rows]
    }
    extra |= {FLIP_KEY: flip} if flip else {}
    goals = goal_values()
    about = fill(PHRASES["about"], about_values(arms) | goals)
    write_results(out, NAME, PHRASES["title"], about, args, argv, summaries, figures, notes, extra)


if __name__ == "__main__":
    main(sys.argv[1:])
