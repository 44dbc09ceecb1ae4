"""An experiment's page: its tables (mean +- std over seeds), its plots (curves with their seed
band, Testing accuracy per seed) and docs/results/<experiment>/README.md and results.json."""

import argparse
import json
import re
import shlex
import time
import zlib
from pathlib import Path

import matplotlib.ticker
import numpy as np

from .experiment_stats import mean_std
from .files import atomic_write_text
from .report import new_figure, save_figure
from .runtime import git_commit

CLASS_ORDER_HINT = ("glioma", "meningioma", "notumor", "pituitary")


def pm(stat: dict | None, percent: bool = True, digits: int = 2) -> str:
    """ "mean +- std" text of a mean_std dict; percentages for fractions."""
    if stat is None:
        return "-"
    scale = 100 if percent else 1
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def has_train_eval(arms: list[dict[str, object]]) -> bool:
    """Whether any arm records eval-mode training accuracy: the table then has its column."""
    return any("train_eval_accuracy" in arm for arm in arms)


def results_table(summaries: list[dict[str, object]]) -> list[str]:
    """Two markdown tables, one row per arm, mean ± std over seeds: how the arms trained (cost,
    training and validation figures), then how they scored (Testing, its recall per class, the
    external sets). One table of every column was 18 columns wide."""
    classes = next((list(s["recall"]) for s in summaries if "recall" in s), list(CLASS_ORDER_HINT))
    external = next((s["external"] for s in summaries if s.get("external")), {})
    train_eval = has_train_eval(summaries)
    training = ["arm", "params (M)", "GMACs", "s / epoch", "train acc %", "train loss"]
    training += ["train acc (eval) %"] if train_eval else []
    training += ["val acc %", "val loss", "seeds"]
    scoring = ["arm", "test acc %", "leak-free acc %"] + [f"recall {c} %" for c in classes]
    scoring += [f"{name}: {v['metric']} %" for name, v in external.items()]

    def row(s: dict, header: list[str], cells: list[str]) -> str:
        if not s["finished"]:  # the seeds column says why; the other table only marks the row
            why = f"0 of {s['diverged']} (diverged)" if s["diverged"] else "0 (not run)"
            cells = ["-"] * (len(header) - 2) + [why if header[-1] == "seeds" else "-"]
        return "| " + " | ".join([s["label"], *cells]) + " |"

    lines = ["| " + " | ".join(training) + " |", "|---|" + "---:|" * (len(training) - 1)]
    for s in summaries:
        cells = []
        if s["finished"]:
            cells = [f"{s['params'] / 1e6:.1f}", f"{s['macs'] / 1e9:.2f}", pm(s["seconds_per_epoch"], False, 1)]
            cells += [pm(s["train_accuracy"]), pm(s["train_loss"], False, 3)]
            cells += [pm(s.get("train_eval_accuracy"))] if train_eval else []
            cells += [pm(s["val_accuracy"]), pm(s["val_loss"], False, 3)]
            cells.append(f"{s['finished']}" + (f" ({s['diverged']} diverged)" if s["diverged"] else ""))
        lines.append(row(s, training, cells))
    lines += ["", "| " + " | ".join(scoring) + " |", "|---|" + "---:|" * (len(scoring) - 1)]
    for s in summaries:
        cells = []
        if s["finished"]:
            cells = [pm(s["test_accuracy"]), pm(s["leak_free_accuracy"])]
            cells += [pm(s["recall"][c], digits=1) for c in classes]
            cells += [pm(s.get("external", {}).get(name, {}).get("value"), digits=1) for name in external]
        lines.append(row(s, scoring, cells))
    return lines


# One colour per arm in every figure: a family's hue, darker for the deeper network.
ARM_COLOURS = {
    "plain-18": "#ef8a62",
    "plain-34": "#b2182b",
    "residual-18 (B)": "#4393c3",
    "residual-34 (B)": "#053061",
    "residual-18 (A)": "#5aae61",
    "residual-34 (A)": "#00441b",
}
OTHER_COLOURS = ("#762a83", "#e08214", "#35978f", "#8c510a", "#c51b7d", "#4d4d4d")


def arm_colour(label: str) -> str:
    """The colour of an arm: its own in ARM_COLOURS, else one drawn from OTHER_COLOURS by its name,
    so the same label gets the same colour in every figure."""
    return ARM_COLOURS.get(label) or OTHER_COLOURS[zlib.crc32(label.encode()) % len(OTHER_COLOURS)]


def _band(ax, x: np.ndarray, runs: list[list[float]], style: str, label: str, color=None, width: float = 1.5):
    values = np.asarray(runs, dtype=float)
    mean = values.mean(0)
    line = ax.plot(x, mean, style, label=label, color=color, linewidth=width)[0]
    if len(values) > 1:
        ax.fill_between(
            x, mean - values.std(0, ddof=1), mean + values.std(0, ddof=1), color=line.get_color(), alpha=0.15
        )
    return line.get_color()


def plot_curves(
    path: Path,
    summaries: list[dict[str, object]],
    groups: dict[str, list[str]] | None = None,
    train_key: str = "train_accuracy",
) -> Path:
    """Training loss and error against epochs, mean over seeds with a ±1 std band; one row of two
    panels per group of arms (the ResNet paper's Figure 4 puts plain and residual apart), every row on
    the same axes. train_key: the running training accuracy of the epoch ("train_accuracy", augmented
    crops, dropout on) or the training rows scored like validation ("train_eval_accuracy")."""
    by_label = {s["label"]: s for s in summaries if s["finished"]}
    groups = groups or {"": list(by_label)}
    fig = new_figure(11, 3.4 * len(groups) + 0.8)
    axes = fig.subplots(len(groups), 2, squeeze=False, sharex=True, sharey="col")
    augmented, smoothed = training_conditions(list(by_label.values()))
    running = "running, augmented" if augmented else "running"
    measured = "eval mode, centre crops" if train_key == "train_eval_accuracy" else running
    loss_label = "running training loss" + (" (smoothed labels)" if smoothed else "")
    for row, (title, labels) in zip(axes, groups.items()):
        for label in labels:
            if label not in by_label:
                continue
            curves = [s["curves"] for s in by_label[label]["seeds"] if "curves" in s]
            x = np.arange(1, len(curves[0]["train_loss"]) + 1)
            color = _band(row[0], x, [c["train_loss"] for c in curves], "o-", label, arm_colour(label))
            train = [[100 * (1 - a) for a in c.get(train_key) or c["train_accuracy"]] for c in curves]
            _band(row[1], x, train, "--", f"{label}, training", color, 1.0)
            val = [[100 * (1 - a) for a in c["val_accuracy"]] for c in curves]
            _band(row[1], x, val, "s-", f"{label}, validation", color, 2.0)
        row[0].set(ylabel=loss_label)
        row[0].set_title(f"{title}: training loss".strip(": "), fontsize=10)
        row[1].set(ylabel="error (%)")
        row[1].set_title(f"{title}: error, training ({measured}) dashed, validation solid".strip(": "), fontsize=10)
        for ax in row:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return save_figure(fig, path)


def seed_bars(
    ax, x: np.ndarray, per_arm: list[list[float]], width: float, label: str | None = None, colors: list | None = None
) -> None:
    """Bars of the mean with ±1 sample std (in each arm's colour, if given), and a black dot per seed."""
    stats = [mean_std(values) for values in per_arm]
    means, stds = [st["mean"] for st in stats], [st["std"] for st in stats]
    ax.bar(x, means, width, yerr=stds, capsize=3, label=label, alpha=0.8, color=colors)
    for xi, values in zip(x, per_arm):
        ax.plot([xi] * len(values), values, "k.", markersize=4)


def seed_points(ax, x: np.ndarray, per_arm: list[list[float]], label: str | None = None) -> None:
    """The mean as a marker with ±1 sample std, and a small black dot for every seed's value beside it:
    for axes that do not start at zero, where a bar's length would mislead."""
    stats = [mean_std(values) for values in per_arm]
    ax.errorbar(
        x, [st["mean"] for st in stats], yerr=[st["std"] for st in stats], fmt="o", capsize=4, markersize=6, label=label
    )
    for xi, values in zip(x, per_arm):
        ax.plot([xi + 0.07] * len(values), values, "k.", markersize=4)


def plot_test_accuracy(path: Path, summaries: list[dict[str, object]]) -> Path:
    """Testing accuracy per arm, full split and leak-free subset: mean ± std and each seed, as points,
    on an axis cut to the range of the values (bars would exaggerate the differences)."""
    done = [s for s in summaries if s["finished"]]
    fig = new_figure(max(5, 1.6 * len(done)), 3.8)
    ax = fig.subplots()
    x = np.arange(len(done))
    for offset, key, name in (
        (-0.15, "test_accuracy", "full Testing"),
        (0.15, "leak_free_accuracy", "leak-free subset"),
    ):
        seed_points(ax, x + offset, [[100 * v for v in s[key]["values"]] for s in done], name)
    low = min(
        [100 * v for s in done for key in ("test_accuracy", "leak_free_accuracy") for v in s[key]["values"]], default=0
    )
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_xlim(-0.6, len(done) - 0.4)
    ax.set_xticks(x, [s["label"] for s in done], rotation=15, ha="right")
    ax.set(
        ylabel="accuracy (%), axis not from 0", title="Testing accuracy (circles: mean ± std over seeds, dots: seeds)"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    return save_figure(fig, path)


def training_conditions(arms: list[dict[str, object]]) -> tuple[bool, bool]:
    """(augmented, label-smoothed): whether any arm trains on augmented batches (the default where no arm
    records its settings) and whether any smooths its labels."""
    settings = [arm["settings"] for arm in arms if "settings" in arm]
    augmented = any(s.get("augment", True) for s in settings) or not settings
    return augmented, any(s.get("label_smoothing", 0) for s in settings)


def table_columns(arms: list[dict[str, object]]) -> str:
    """What the table's training columns measure, for the arms' settings (augmented or not, label
    smoothing or not), and the eval-mode training column where an arm has it."""
    augmented, smoothed = training_conditions(arms)
    batches = PAGE["augmented" if augmented else "unaugmented"]
    train_eval = " " + PAGE["train_eval"] if has_train_eval(arms) else ""
    values = {"batches": batches, "smoothing": PAGE["smoothed"] + " " if smoothed else "", "train_eval": train_eval}
    return fill(PAGE["columns"], values)


def unfinished(record: dict[str, object]) -> str:
    """'' when every arm has all its seeds, else which arms have how many so far."""
    short = [
        (arm["label"], arm.get("finished", 0)) for arm in record["arms"] if arm.get("finished", 0) < record["seeds"]
    ]
    if not short:
        return ""
    done = ", ".join(f"{label} {n}" for label, n in short)
    return " " + fill(PAGE["unfinished"], {"done": done, "seeds": record["seeds"]})


def training_time(record: dict[str, object]) -> str:
    """' The runs' epochs took N min in all.' from the per-seed seconds, or '' for older records."""
    seconds = [
        seed.get("training_seconds")
        for arm in record["arms"]
        for seed in arm.get("seeds", [])
        if "diverged" not in seed
    ]
    if not seconds or None in seconds:
        return ""
    return " " + fill(PAGE["training_time"], {"runs": len(seconds), "minutes": f"{sum(seconds) / 60:.0f}"})


def preamble_values(record: dict[str, object]) -> dict[str, object]:
    """What the page's first paragraph says of its runs: scale, seeds, devices, time (the commits and
    the date stay in results.json, the run record)."""
    values = {"scale": record["scale"], "seeds": record["seeds"], "unfinished": unfinished(record)}
    values |= {"devices": ", ".join(record["devices"])}
    return values | {"columns": table_columns(record["arms"]), "training_time": training_time(record)}


def results_markdown(record: dict[str, object], figure_dir: str = "") -> list[str]:
    """An experiment's results.json as markdown: what and how, the table, notes, figures (their
    paths prefixed with figure_dir, so docs/results.md can point into the experiment's folder)."""
    lines = [
        record["about"],
        "",
        "```",
        record["command"],
        "```",
        "",
        fill(PAGE["preamble"], preamble_values(record)),
        "",
    ]
    lines += results_table(record["arms"]) + [""]
    if not any(arm.get("external") for arm in record["arms"]):
        lines += [PAGE["not_external"], ""]
    lines += [note + "\n" for note in record["notes"]]
    for figure in record["figures"]:
        lines += [f"![{figure['caption']}]({figure_dir}{figure['file']})", "", f"*{figure['caption']}*", ""]
    return lines


def experiment_readme(record: dict[str, object]) -> str:
    """docs/results/<experiment>/README.md: its title, then results_markdown."""
    return "\n".join([f"# {record['title']}", ""] + results_markdown(record))


def training_argv(argv: list[str]) -> list[str]:
    """The arguments of the command that trains every arm's runs: without --summarize-only (it only
    rewrote the page) and without --arms (it trained some arms only)."""
    shown, skip = [], False
    for a in argv:
        if skip or a == "--summarize-only" or a.startswith("--arms="):
            skip = False
            continue
        skip = a == "--arms"
        if not skip:
            shown.append(a)
    return shown


def write_results(
    out: Path,
    name: str,
    title: str,
    about: str,
    args: argparse.Namespace,
    argv: list[str],
    summaries: list[dict[str, object]],
    figures: list[tuple[str, str]],
    notes: list[str] | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """results.json and README.md: the command, commits, devices, the table and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = [s for arm in summaries for s in arm["seeds"]]
    commits = sorted({s["commit"] for s in seeds})
    devices = sorted({f"{s['device']} (torch {s['torch']})" for s in seeds})
    command = shlex.join(["python", f"experiments/{name}.py", *training_argv(argv)])
    record = {
        "experiment": name,
        "title": title,
        "scale": args.scale,
        "command": command,
        "written_at": time.strftime("%Y-%m-%d %H:%M"),
        "commit_at_write": git_commit(),
        "run_commits": commits,
        "devices": devices,
        "seeds": args.seeds,
        "arms": summaries,
        "about": about,
        "notes": notes or [],
        "figures": [{"caption": c, "file": f} for c, f in figures],
        "extra": extra or {},
    }
    atomic_write_text(out / "results.json", json.dumps(record, indent=1))
    path = out / "README.md"
    atomic_write_text(path, experiment_readme(record))
    print(f"wrote {path} and results.json", flush=True)
    return path


# A page's prose lives in a Markdown template (experiments/templates/); code fills its {{name}} slots.
PLACEHOLDER = re.compile(r"\{\{([a-z0-9_]+)\}\}")


def read_template(path: Path) -> str:
    """A template's text without its leading <!-- comment --> (which says what fills it)."""
    text = Path(path).read_text()
    if text.startswith("<!--"):
        text = text[text.index("-->") + 3 :].lstrip("\n")
    return text


def fill(template: str, values: dict[str, object], source: str = "template") -> str:
    """The template with every {{name}} replaced by values[name]. A slot without a value, a value
    without a slot, or anything left between double braces (a misspelt slot such as {{ Gap }}, or a
    slot inside an unfilled phrase) is an error naming `source`: a page never shows a raw slot, nor
    silently drops a measured value."""
    slots = set(PLACEHOLDER.findall(template))
    missing, unused = sorted(slots - set(values)), sorted(set(values) - slots)
    if missing or unused:
        raise ValueError(f"{source}: slots without a value: {missing}; values without a slot: {unused}")
    text = PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    left = re.search(r"\{\{.*?\}\}", text)
    if left:
        raise ValueError(
            f"{source}: {left.group()} is not a slot (lower-case letters, digits and _) or was never filled"
        )
    return text


def read_phrases(path: Path) -> dict[str, str]:
    """The named sentences of a phrases template: each runs from its <!-- phrase: name --> marker to
    the next (the rules that choose one stay in code, the words live in the file)."""
    parts = re.split(r"<!-- phrase: ([a-z0-9_]+) -->\n", read_template(path).replace("\r\n", "\n"))
    names = parts[1::2]
    stray = [line for text in parts[::2] for line in text.splitlines() if "<!--" in line]
    if len(set(names)) != len(names) or stray or parts[0].strip():
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"{path}: phrase names given twice {repeated}; malformed markers or text before the first: {stray}"
        )
    return {name: text.removesuffix("\n") for name, text in zip(names, parts[2::2])}


# The words every experiment page shares (templates/experiment_page.md, shipped with the package).
PAGE = read_phrases(Path(__file__).resolve().parent / "templates" / "experiment_page.md")
