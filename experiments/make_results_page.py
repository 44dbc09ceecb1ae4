"""Regenerate docs/results.md, one page with every result's table and plots, from the files the
experiments and runs wrote under docs/results/ (results.json of an experiment; config.json,
metrics.jsonl and metrics.json of a single run, or of one run per seed in seed0/, seed1/ ...).
It also rewrites each experiment's README.md from its results.json. No number on these pages is
typed by hand.

    python experiments/make_results_page.py [--results docs/results] [--out docs/results.md]
"""

import argparse
import json
import os
from pathlib import Path

from resnet_scratch.checkpoint import read_epochs
from resnet_scratch.experiment_pages import experiment_readme, fill, read_phrases, results_markdown
from resnet_scratch.experiment_stats import external_headline, mean_std
from resnet_scratch.files import atomic_write_text
from resnet_scratch.studies.brain_mri import external_lines

ORDER = (  # then by name
    "main_cpu",
    "resnet18_128px",
    "resnet18_128px_weak",
    "external_validity",
    "intensity_strength",
    "time_to_accuracy",
    "resnet18_cpu_onecycle",
    "ablate_skip",
    "residual_responses",
    "ablate_dropout",
    "compare_models",
    "peer_torchvision",
)


# The page's words; this script fills in the figures of each result folder.
PHRASES = read_phrases(Path(__file__).resolve().parent / "templates" / "results_page.md")


def figure_lines(folder: Path, prefix: str) -> list[str]:
    """Every PNG in the folder, as markdown images linked through prefix."""
    return [line for png in sorted(folder.glob("*.png")) for line in (f"![{png.stem}]({prefix}{png.name})", "")]


def single_run_markdown(folder: Path, prefix: str) -> list[str]:
    """A single training run: its command settings, Testing table (full and leak-free) and plots."""
    config = json.loads((folder / "config.json").read_text())
    results = json.loads((folder / "metrics.json").read_text())
    epochs = read_epochs(folder)
    settings = config["config"]
    classes = list(results["test"]["per_class"])
    minutes = sum(e["seconds"] for e in epochs) / 60
    weak = settings.get("weak_tumour")
    environment = config["environment"]
    values = run_values(settings, results["input_size"]) | {"epochs": len(epochs)}
    values |= {"seed": settings["seed"], "device": environment.get("gpu", environment["device"])}
    values |= {"weak": fill(PHRASES["weak_labels"], {"folder": Path(weak).name}) if weak else ""}
    values |= {"torch": environment["torch"], "minutes": f"{minutes:.1f}", "best_epoch": results["best_epoch"]}
    lines = [
        fill(PHRASES["single_run"], values | {"best_val": f"{100 * results['val_accuracy']:.2f}"}),
        "",
        "| Testing | images | accuracy | macro F1 | " + " | ".join(f"recall {c}" for c in classes) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(classes),
    ]
    for key, name in (("test", "full"), ("test_leak_free", "leak-free")):
        r = results[key]
        lines.append(
            f"| {name} | {r['samples']} | {100 * r['accuracy']:.2f}% | {r['macro_f1']:.4f} | "
            + " | ".join(f"{r['per_class'][c]['recall']:.3f}" for c in classes)
            + " |"
        )
    lines += [""] + (external_lines(results["external"]) if results.get("external") else [PHRASES["not_external"]])
    return lines + [""] + figure_lines(folder, prefix)


def run_values(settings: dict, size: int) -> dict[str, object]:
    """The settings a run's sentence names (its commit stays in config.json, the run record)."""
    values = {"model": settings["model"], "size": size, "schedule": settings["schedule"], "lr": settings["lr"]}
    return values | {"batch": settings["batch_size"]}


def seeds_markdown(folders: list[Path], prefix: str) -> list[str]:
    """One setting run once per seed (folders seed0, seed1, ...): a row per seed, then mean +- std."""
    runs = [
        (json.loads((f / "config.json").read_text()), json.loads((f / "metrics.json").read_text())) for f in folders
    ]
    settings = runs[0][0]["config"]
    values = run_values(settings, runs[0][1]["input_size"]) | {"epochs": settings["epochs"]}
    lines = [
        fill(PHRASES["seeds_run"], values),
        "",
        "| seed | Testing, full | Testing, leak-free | macro F1 full / leak-free | best epoch (val acc) "
        "| training min |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for folder, (config, results) in zip(folders, runs):
        minutes = sum(e["seconds"] for e in read_epochs(folder)) / 60
        lines.append(
            f"| {config['config']['seed']} | {100 * results['test']['accuracy']:.2f}% | "
            f"{100 * results['test_leak_free']['accuracy']:.2f}% | {results['test']['macro_f1']:.3f} / "
            f"{results['test_leak_free']['macro_f1']:.3f} | {results['best_epoch']} "
            f"({100 * results['val_accuracy']:.2f}%) | {minutes:.1f} |"
        )
    full = mean_std([r["test"]["accuracy"] * 100 for _, r in runs])
    leak_free = mean_std([r["test_leak_free"]["accuracy"] * 100 for _, r in runs])
    lines += [
        f"| **mean +- std** | **{full['mean']:.2f} +- {full['std']:.2f}%** | "
        f"**{leak_free['mean']:.2f} +- {leak_free['std']:.2f}%** | | | |",
        "",
    ]
    if all(r.get("external") for _, r in runs):
        for name in runs[0][1]["external"]:
            head = external_headline(runs[0][1]["external"][name])["metric"]
            stat = mean_std([100 * external_headline(r["external"][name])["value"] for _, r in runs])
            values = {"set": name, "metric": head, "mean": f"{stat['mean']:.2f}", "std": f"{stat['std']:.2f}"}
            lines.append(fill(PHRASES["external_over_seeds"], values))
        lines.append("")
    else:
        lines += [PHRASES["not_external"], ""]
    return lines + figure_lines(folders[0].parent, prefix)


def build_page(results: Path, page: Path) -> str:
    """The markdown of the results page; image links are relative to the page's folder."""
    folders = sorted(
        (f for f in results.iterdir() if f.is_dir()),
        key=lambda f: (ORDER.index(f.name) if f.name in ORDER else len(ORDER), f.name),
    )
    rel = Path(os.path.relpath(results.resolve(), page.parent.resolve())).as_posix()
    body: list[str] = []
    index: list[str] = []
    for folder in folders:
        prefix = f"{rel}/{folder.name}/"
        if (folder / "results.json").is_file():
            record = json.loads((folder / "results.json").read_text())
            title, lines = record["title"], results_markdown(record, prefix)
        elif (folder / "metrics.json").is_file() and (folder / "config.json").is_file():
            title = fill(PHRASES["single_run_title"], {"name": folder.name})
            lines = single_run_markdown(folder, prefix)
        elif seeds := sorted(f.parent for f in folder.glob("seed*/metrics.json")):
            title, lines = fill(PHRASES["seeds_title"], {"name": folder.name}), seeds_markdown(seeds, prefix)
        elif (folder / "README.md").is_file():
            first = (folder / "README.md").read_text().splitlines()[0].lstrip("# ")
            title, lines = first, [fill(PHRASES["recorded_output"], {"link": f"{prefix}README.md"})]
        else:
            continue
        anchor = folder.name.replace("_", "-")
        index.append(f"- [{title}](#{anchor})")
        body += [f'<a id="{anchor}"></a>', "", f"## {title}", "", f"Folder: [{prefix}]({prefix})", ""] + lines + [""]
    return "\n".join([PHRASES["head"], ""] + index + [""] + body)


def main() -> None:
    """Write the page."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("docs/results"))
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    args = p.parse_args()
    for record in sorted(args.results.glob("*/results.json")):  # each experiment's own page, in today's words
        atomic_write_text(record.parent / "README.md", experiment_readme(json.loads(record.read_text())))
    atomic_write_text(args.out, build_page(args.results, args.out))
    print(f"wrote {args.out} and the README.md of each experiment")


if __name__ == "__main__":
    main()
