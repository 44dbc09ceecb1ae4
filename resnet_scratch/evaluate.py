"""Evaluate a checkpoint on labelled images it never trained on: a dataset's Testing split (full and
leak-free), or folders of class folders from other collections, whose class names are matched to
the checkpoint's through aliases, --class-map, and "tumour" (one of the tumour classes, type unknown).

Images of any size, mode and aspect ratio go through the checkpoint's own preprocessing (its head
crop, resize of the shorter side, centre crop, its normalisation), as in training.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import model_from_checkpoint
from .data import Split, load_folder, load_split
from .data.labels import (
    ANY_TUMOUR,
    NO_TUMOUR,
    parse_class_map,
    resolve_class,
    tumour_classes,
)
from .data.run import HELD_OUT, clean_rows, leak_free_rows, weak_held_out
from .data.transforms import eval_resize
from .files import atomic_write_text, remove_stale_temporaries
from .inference import Preprocess, logits_of, report_on
from .report import (
    external_lines,
    fmt_share,
    held_out_lines,
    plot_confusion,
    plot_grad_cam,
    testing_panels,
)
from .runtime import bf16_supported, resolve_device


@dataclass
class Scored:
    """One evaluated set: its images (store rows), what each truly is, and the model's logits."""

    name: str
    folder: Path
    split: Split
    rows: np.ndarray
    truth: list[str]
    logits: Tensor
    held_out: bool = False  # only the part weak-label training never saw was scored (HELD_OUT)


def summarize(scored: Scored, classes: list[str]) -> dict[str, object]:
    """Accuracy and per-class recall where the class is known, tumour sensitivity (the share of tumour
    images called any tumour class) and specificity (no-tumour images called no tumour), the confusion
    matrix (rows: what the images are, columns: the checkpoint's classes)."""
    predicted = [classes[i] for i in scored.logits.argmax(1).tolist()]
    tumours = {classes[i] for i in tumour_classes(classes)}
    truth = scored.truth
    known = [i for i, t in enumerate(truth) if t in classes]
    is_tumour = [i for i, t in enumerate(truth) if t in tumours or t == ANY_TUMOUR]
    healthy = [i for i, t in enumerate(truth) if t == NO_TUMOUR]
    rows = [c for c in classes + [ANY_TUMOUR] if c in set(truth)]
    counts = [[sum(1 for t, p in zip(truth, predicted) if t == r and p == c) for c in classes] for r in rows]

    def share(members: list[int], hit: Callable[[int], bool]) -> float | None:
        return sum(1 for i in members if hit(i)) / len(members) if members else None

    return {
        "images": len(truth),
        "accuracy": share(known, lambda i: predicted[i] == truth[i]),
        "recall": {
            c: share([i for i in known if truth[i] == c], lambda i: predicted[i] == truth[i])
            for c in classes
            if c in set(truth)
        },
        "tumour_images": len(is_tumour),
        "tumour_sensitivity": share(is_tumour, lambda i: predicted[i] in tumours),
        "no_tumour_images": len(healthy),
        "specificity": share(healthy, lambda i: predicted[i] == NO_TUMOUR),
        "confusion": {"rows": rows, "columns": classes, "counts": counts},
        "predictions": {
            str(Path(scored.split.paths[r]).relative_to(scored.folder)): p for r, p in zip(scored.rows, predicted)
        },
    } | ({"scored_only": HELD_OUT} if scored.held_out else {})


def score_folder(
    model: nn.Module,
    meta: dict[str, object],
    folder: Path,
    device: torch.device,
    *,
    class_map: dict[str, str] | None = None,
    clean_list: Path | None = None,
    cache_dir: str | None = None,
    bf16: bool = False,
) -> Scored:
    """A folder of class folders through the checkpoint's preprocessing; clean_list chooses the images
    scored. The folder a checkpoint was weakly trained on (its metadata's weak_trained_on) is scored
    on its held-out part only (data.run.weak_held_out)."""
    folder = Path(folder)
    classes = list(meta["classes"])
    side = eval_resize(int(meta["input_size"]))
    split = load_folder(folder, size=(side, side), head_crop=bool(meta.get("head_crop")), cache_dir=cache_dir)
    names = [resolve_class(c, classes, class_map) for c in split.classes]
    rows = clean_rows(split, folder, clean_list) if clean_list else np.arange(len(split))
    held_out = meta.get("weak_trained_on") == folder.name
    if held_out:
        rows = rows[weak_held_out(split)[rows]]
    if len(rows) == 0:
        raise ValueError(f"{folder}: no images left to score")
    logits = logits_of(model, split.to(device).images, rows, Preprocess.of_checkpoint(meta, bf16))
    truth = [names[int(split.labels[r])] for r in rows]
    return Scored(folder.name, folder, split, rows, truth, logits, held_out)


def worst_errors(scored: Scored, classes: list[str], count: int = 8) -> list[int]:
    """Indices into scored.rows of the most confident mistakes (a tumour of unknown type is mistaken
    when called no tumour)."""
    probabilities = scored.logits.softmax(1)
    predicted = probabilities.argmax(1).tolist()
    wrong = [
        i
        for i, (t, p) in enumerate(zip(scored.truth, predicted))
        if (t == ANY_TUMOUR and classes[p] == NO_TUMOUR) or (t in classes and classes[p] != t)
    ]
    return sorted(wrong, key=lambda i: -float(probabilities[i].max()))[:count]


def plot_errors(path: Path, model: nn.Module, scored: Scored, classes: list[str], prep: Preprocess) -> Path:
    """The most confident mistakes of a set, with Grad-CAM."""
    chosen = worst_errors(scored, classes)
    probabilities = scored.logits.softmax(1)
    captions = [
        f"{classes[int(probabilities[i].argmax())]} {100 * float(probabilities[i].max()):.0f}%\n"
        f"true: {scored.truth[i]}\n{Path(scored.split.paths[scored.rows[i]]).name[:18]}"
        for i in chosen
    ]
    rows = [int(scored.rows[i]) for i in chosen]
    return plot_grad_cam(
        path,
        model,
        scored.split.images,  # on the CPU: only the chosen rows go to the model's device
        rows,
        captions,
        [False] * len(rows),
        prep,
        f"{scored.name}: the most confident mistakes, with Grad-CAM",
    )


def external_sets(root: str | Path | None) -> list[Path]:
    """The folders of class folders in an external root (none when it is unset or absent)."""
    if not root or not Path(root).is_dir():
        return []
    return sorted(
        p
        for p in Path(root).iterdir()
        if p.is_dir() and not p.name.startswith(".") and any(q.is_dir() for q in p.iterdir())
    )


def evaluate_checkpoint(
    checkpoint: Path,
    data: list[Path],
    out: Path | None = None,
    clean_list: Path | None = None,
    class_map: str | None = None,
    device_name: str = "auto",
) -> dict:
    """Score a checkpoint on each of `data` (a dataset root with Testing/, or a folder of class
    folders); write metrics.json, report.md and plots to `out` (default: beside the checkpoint)."""
    model, meta = model_from_checkpoint(checkpoint)
    classes = list(meta["classes"])
    mapping = parse_class_map(class_map)
    device = resolve_device(device_name)
    bf16 = bf16_supported(device)
    model = model.to(device).to(memory_format=torch.channels_last)
    prep = Preprocess.of_checkpoint(meta, bf16)
    out = Path(out) if out else Path(checkpoint).parent / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    results: dict = {
        "checkpoint": str(checkpoint),
        "input_size": meta["input_size"],
        "head_crop": meta["head_crop"],
        "sets": {},
    }
    panels, figures = [], {}
    roots = [p for p in map(Path, data) if (p / "Testing").is_dir()]
    if len(roots) > 1:
        raise ValueError(
            f"--data names {len(roots)} dataset roots ({', '.join(map(str, roots))}): score one at a "
            "time, or pass their Testing folders as folders of class folders"
        )
    for path in map(Path, data):
        if (path / "Testing").is_dir():
            test, leak_free = dataset_testing(path, classes, mapping, clean_list, bool(meta["head_crop"]))
            logits = logits_of(model, test.to(device).images, np.arange(len(test)), prep)
            labels = torch.tensor([classes.index(c) for c in [test.classes[i] for i in test.labels.tolist()]])
            full = report_on(logits, labels, classes)
            results["test"] = full
            panels += testing_panels({"test": full})
            if leak_free is not None:
                results["test_leak_free"] = report_on(logits[leak_free], labels[leak_free], classes)
                panels += testing_panels({"test_leak_free": results["test_leak_free"]})
            continue
        scored = score_folder(model, meta, path, device, class_map=mapping, clean_list=clean_list, bf16=bf16)
        name = scored.name if scored.name not in results["sets"] else f"{scored.name}-{len(results['sets'])}"
        results["sets"][name] = summarize(scored, classes)
        confusion = results["sets"][name]["confusion"]
        panels.append((name, confusion["counts"], confusion["rows"], confusion["columns"]))
        figures[f"{name}: the most confident mistakes, with Grad-CAM"] = plot_errors(
            out / f"errors-{name}.png", model, scored, classes, prep
        ).name
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=1))
    plot_confusion(out / "confusion.png", panels)
    write_evaluation_report(out, results, {"Confusion matrices": "confusion.png", **figures})
    for line in evaluation_lines(results):
        print(line)
    print(f"wrote {out / 'report.md'}, {out / 'metrics.json'} and the plots beside them")
    return results


def dataset_testing(
    root: Path, classes: list[str], mapping: dict[str, str], clean_list: Path | None, head_crop: bool
) -> tuple[Split, np.ndarray | None]:
    """A dataset's Testing split (its class names matched to the checkpoint's) and its leak-free rows:
    from the clean list, or computed against its Training split when it has one."""
    test = load_split(root, "Testing", head_crop=head_crop)
    names = [resolve_class(c, classes, mapping) for c in test.classes]
    if ANY_TUMOUR in names:
        raise ValueError(
            f"{root}/Testing: a {ANY_TUMOUR!r} class cannot be scored as a dataset split; "
            "pass the folder itself to score it as a set"
        )
    test.classes = names
    if clean_list:
        return test, clean_rows(test, root / "Testing", clean_list)
    if not (root / "Training").is_dir():
        return test, None
    train = load_split(root, "Training", head_crop=head_crop)
    return test, leak_free_rows(train, test, root, None)


def evaluation_lines(results: dict) -> list[str]:
    """One line per evaluated set, for the terminal."""
    lines = []
    for key, title in (("test", "Testing (full)"), ("test_leak_free", "Testing (leak-free)")):
        if key in results:
            r = results[key]
            recalls = ", ".join(f"{c} {v['recall']:.3f}" for c, v in r["per_class"].items())
            lines.append(
                f"{title}: accuracy {r['accuracy']:.4f} on {r['samples']} images, macro F1 {r['macro_f1']:.4f}; "
                f"recall: {recalls}"
            )
    for name, r in results["sets"].items():
        recall = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items())
        parts = [f"{name}: {r['images']} images" + (f" ({r['scored_only']})" if r.get("scored_only") else "")]
        if r["accuracy"] is not None:
            parts.append(f"accuracy {r['accuracy']:.4f} ({recall})")
        if r["tumour_sensitivity"] is not None:
            parts.append(f"tumour sensitivity {r['tumour_sensitivity']:.4f} of {r['tumour_images']}")
        if r["specificity"] is not None:
            parts.append(f"specificity {r['specificity']:.4f} of {r['no_tumour_images']}")
        lines.append("; ".join(parts))
    return lines


def write_evaluation_report(out: Path, results: dict, figures: dict[str, str]) -> Path:
    """report.md of an evaluation: Testing tables, the other sets, the figures."""
    lines = [
        f"# Evaluation of {results['checkpoint']}",
        "",
        f"Input {results['input_size']} px{', head-cropped' if results['head_crop'] else ''}.",
        "",
    ]
    for key, title in (("test", "Testing (full)"), ("test_leak_free", "Testing (leak-free)")):
        if key in results:
            r = results[key]
            lines += [
                f"## {title}: {fmt_share(r['accuracy'])} of {r['samples']} images, macro F1 {r['macro_f1']:.4f}",
                "",
            ]
    if results["sets"]:
        lines += ["## Labelled folders", ""] + external_lines(results["sets"]) + [""] + held_out_lines(results["sets"])
    for caption, file in figures.items():
        lines += [f"![{caption}]({file})", "", f"*{caption}*", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
