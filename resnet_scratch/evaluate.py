"""Scoring a checkpoint on labelled images it never trained on, through its Predictor: a dataset's
Testing split (full and leak-free), or folders of class folders from other collections, whose class
names are matched to the checkpoint's through aliases and --class-map.

test_run is the final test of a training run; evaluate_checkpoint is the `evaluate` command. Both
score the same way and write their report with report.write_report. A Study adds metrics and notes.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import read_epochs
from .config import Config
from .cost import forward_macs, training_cost
from .data import Split, load_folder, load_split
from .data.labels import ANY_TUMOUR, check_class_map, parse_class_map, resolve_class
from .data.run import RunData, clean_rows, leak_free_rows
from .files import atomic_write_text, remove_stale_temporaries
from .predictor import Predictor, Preprocess, Scores, score
from .study import Study


@dataclass
class Results:
    """What a checkpoint scored (metrics.json): Testing full and leak-free, and other sets by name."""

    input_size: int
    test: Scores | None = None
    test_leak_free: Scores | None = None
    external: dict[str, dict] = field(default_factory=dict)
    about: dict[str, object] = field(default_factory=dict)  # the run's best epoch, or the checkpoint scored
    notes: list[str] = field(default_factory=list)  # what could not be scored, and why

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = self.about | {"input_size": self.input_size}
        for key in ("test", "test_leak_free"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key).as_dict()
        return d | {"external": self.external} | ({"notes": self.notes} if self.notes else {})


@dataclass
class Scored:
    """One evaluated set: its images (store rows), what each truly is, and the model's logits."""

    name: str
    folder: Path
    split: Split
    rows: np.ndarray
    truth: list[str]
    logits: torch.Tensor
    note: str | None = None  # when only part of the folder was scored, which part (Study.rows_to_score)


def summarize_set(scored: Scored, classes: list[str], study: Study) -> dict[str, object]:
    """Accuracy and per-class recall where the class is known, the study's metrics, the confusion
    matrix (rows: what the images are, columns: the checkpoint's classes), every image's prediction."""
    predicted = [classes[i] for i in scored.logits.argmax(1).tolist()]
    truth = scored.truth
    known = [i for i, t in enumerate(truth) if t in classes]
    rows = [c for c in classes if c in set(truth)] + sorted(set(truth) - set(classes))
    counts = [[sum(1 for t, p in zip(truth, predicted) if t == r and p == c) for c in classes] for r in rows]

    def accuracy(members: list[int]) -> float | None:
        return sum(1 for i in members if predicted[i] == truth[i]) / len(members) if members else None

    return (
        {
            "images": len(truth),
            "accuracy": accuracy(known),
            "recall": {c: accuracy([i for i in known if truth[i] == c]) for c in classes if c in set(truth)},
        }
        | study.set_metrics(truth, predicted, classes)
        | {
            "confusion": {"rows": rows, "columns": classes, "counts": counts},
            "predictions": {
                str(Path(scored.split.paths[r]).relative_to(scored.folder)): p for r, p in zip(scored.rows, predicted)
            },
        }
        | ({"scored_only": scored.note} if scored.note else {})
    )


def score_folder(
    predictor: Predictor,
    folder: Path,
    study: Study,
    *,
    class_map: dict[str, str] | None = None,
    clean_list: Path | None = None,
    cache_dir: str | None = None,
) -> Scored:
    """A folder of class folders through the checkpoint's preprocessing; clean_list chooses the images
    scored, and the study may score only part of them (Study.rows_to_score)."""
    folder = Path(folder)
    side = predictor.prep.store_side
    split = load_folder(folder, size=(side, side), head_crop=predictor.prep.head_crop, cache_dir=cache_dir)
    names = [resolve_class(c, predictor.classes, class_map) for c in split.classes]
    rows = clean_rows(split, folder, clean_list) if clean_list else np.arange(len(split))
    rows, note = study.rows_to_score(predictor.meta, folder, split, rows)
    if len(rows) == 0:
        raise ValueError(f"{folder}: no images left to score")
    logits = predictor.logits(split.images, rows)
    truth = [names[int(split.labels[r])] for r in rows]
    return Scored(folder.name, folder, split, rows, truth, logits, note)


def plot_errors(path: Path, predictor: Predictor, scored: Scored, study: Study, count: int = 8) -> Path:
    """The most confident mistakes of a set, with Grad-CAM."""
    from .report import plot_grad_cam

    classes = predictor.classes
    probabilities = scored.logits.softmax(1)
    predicted = probabilities.argmax(1).tolist()
    wrong = [i for i, (t, p) in enumerate(zip(scored.truth, predicted)) if study.mistaken(t, classes[p], classes)]
    chosen = sorted(wrong, key=lambda i: -float(probabilities[i].max()))[:count]
    captions = [
        f"{classes[predicted[i]]} {100 * float(probabilities[i].max()):.0f}%\n"
        f"true: {scored.truth[i]}\n{Path(scored.split.paths[scored.rows[i]]).name[:18]}"
        for i in chosen
    ]
    rows = [int(scored.rows[i]) for i in chosen]
    title = mistakes_caption(scored.name)
    # the store stays on the CPU: only the chosen rows go to the model's device
    return plot_grad_cam(
        path, predictor.model, scored.split.images, rows, captions, [False] * len(rows), predictor.prep, title
    )


def mistakes_caption(name: str) -> str:
    """The title, and the report's caption, of a set's figure of mistakes."""
    return f"{name}: the most confident mistakes, with Grad-CAM"


def external_sets(root: str | Path | None) -> list[Path]:
    """The folders of class folders in an external root (none when it is unset or absent)."""
    if not root or not Path(root).is_dir():
        return []
    return sorted(
        p
        for p in Path(root).iterdir()
        if p.is_dir() and not p.name.startswith(".") and any(q.is_dir() for q in p.iterdir())
    )


def score_sets(
    predictor: Predictor,
    folders: list[Path],
    study: Study,
    out: Path,
    results: Results,
    class_map: dict[str, str] | None = None,
    clean_list: Path | None = None,
    cache_dir: str | None = None,
    skip_unscorable: bool = False,
    log: "PredictionLog | None" = None,
) -> dict[str, str]:
    """Score each folder into results.external and draw its mistakes into `out`; {caption: figure file}.

    skip_unscorable: a folder that cannot be scored (e.g. class folders this model has no class for)
    is reported and passed over, as after training, where the run itself is done."""
    figures = {}
    for folder in folders:
        try:
            scored = score_folder(
                predictor, folder, study, class_map=class_map, clean_list=clean_list, cache_dir=cache_dir
            )
        except ValueError as e:
            if not skip_unscorable:
                raise
            print(f"external set {folder} not scored: {e}", flush=True)
            continue
        name = scored.name if scored.name not in results.external else f"{scored.name}-{len(results.external)}"
        results.external[name] = summarize_set(scored, predictor.classes, study)
        if log is not None:
            log.add([scored.split.paths[r] for r in scored.rows], scored.truth, scored.logits)
        figure = plot_errors(out / f"errors-{name}.png", predictor, scored, study)
        figures[mistakes_caption(name)] = figure.name
    return figures


def testing_scores(predictor: Predictor, test: Split, leak_free: np.ndarray | None, results: Results) -> torch.Tensor:
    """Testing, full and on its leak-free rows, into results; returns the logits of every image."""
    labels = torch.tensor([predictor.classes.index(test.classes[i]) for i in test.labels.tolist()])
    logits = predictor.logits(test.images)
    results.test = score(logits, labels, predictor.classes)
    if leak_free is not None and len(leak_free) == 0:  # reported as missing; the full split still counts
        results.notes.append("Testing (leak-free): no image left (each has a copy in Training)")
    elif leak_free is not None:  # the same logits: the subset is scored, not run again
        results.test_leak_free = score(logits[leak_free], labels[leak_free], predictor.classes)
    return logits


def test_run(
    run: Path, config: Config, data: RunData, prep: Preprocess, device: torch.device, best: dict, study: Study
) -> Results:
    """A run's final test: Testing once, on the best checkpoint (chosen on the validation split alone),
    the other collections when present, metrics.json, the report and the summary table."""
    from .report import plot_confusion, plot_curves, plot_predictions, run_report, testing_grad_cam, testing_panels

    predictor = Predictor.load(run / "best.safetensors", device, bf16=prep.bf16, channels_last=prep.channels_last)
    if predictor.meta.get("epoch") != best["epoch"]:
        raise ValueError(
            f"{run / 'best.safetensors'} holds epoch {predictor.meta.get('epoch')}, the training state's best "
            f"is epoch {best['epoch']}: the run folder was changed by hand"
        )
    results = Results(prep.size, about={"best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"]})
    views = 2 if prep.tta_flip else 1  # test-time augmentation runs the model once per view
    evaluation = views * forward_macs(config.model, prep.size, config.model_options(), len(predictor.classes))
    cost = training_cost(read_epochs(run), evaluation)
    if cost is not None:
        results.about["training_cost"] = cost
    test = data.test.to(device)
    logits = testing_scores(predictor, test, data.leak_free_rows, results)
    figures = {
        "Confusion matrices on Testing": "confusion.png",
        "Training curves": "curves.png",
        "Testing images: mistakes first": "predictions.png",
        "Where the model looks (Grad-CAM)": "gradcam.png",
    }
    plot_curves(run)
    plot_confusion(run / "confusion.png", testing_panels(results))
    plot_predictions(run / "predictions.png", test.images, test.labels, logits, predictor.classes)
    testing_grad_cam(run / "gradcam.png", predictor, test.images, test.labels, logits)
    folders = external_sets(config.external)
    if not folders:  # said, so that a missing folder is not mistaken for a model that was not asked
        where = f"{config.external} holds no folder of class folders" if config.external else "none given"
        print(f"external sets: {where} (--external FOLDER or $RESNET_SCRATCH_EXTERNAL): only Testing is scored")
    figures |= score_sets(predictor, folders, study, run, results, cache_dir=config.cache_dir, skip_unscorable=True)
    atomic_write_text(run / "metrics.json", json.dumps(results.as_dict(), indent=1))
    run_report(run, config, results, figures, study)
    for line in run_summary(run, results, study):
        print(line)
    return results


def run_summary(run: Path, results: Results, study: Study) -> list[str]:
    """The end-of-run table: per-epoch metrics, then Testing on the full split and leak-free subset,
    then the other collections."""
    lines = [
        f"\n{'epoch':>5} {'lr':>8} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} "
        f"{'img/s':>7} {'s':>6}"
    ]
    for e in read_epochs(run):
        lines.append(
            f"{e['epoch']:>5} {e['lr']:>8.1e} {e['train_loss']:>10.4f} {e['train_accuracy']:>9.4f} "
            f"{e['val_loss']:>9.4f} {e['val_accuracy']:>8.4f} {e['images_per_s']:>7.1f} {e['seconds']:>6.1f}"
        )
    best = f"best epoch {results.about['best_epoch']} (val accuracy {results.about['val_accuracy']:.4f})"
    cost = results.about.get("training_cost")
    spent = [cost_line(cost)] if cost else []
    return lines + evaluation_lines(results, study) + spent + [f"{best}; report: {run / 'report.md'}"]


def cost_line(cost: dict[str, float]) -> str:
    """A run's training cost in words (cost.training_cost)."""
    return (
        f"training cost: {cost['multiply_adds'] / 1e12:.1f} T multiply-adds, "
        f"{cost['relative']:.2f} x the 128 px recipe's; "
        f"{cost['minutes']:.1f} min at {cost['images_per_s']:.0f} img/s on this machine"
    )


def evaluation_lines(results: Results, study: Study) -> list[str]:
    """One line per evaluated set, for the terminal."""
    lines = []
    for r, title in ((results.test, "Testing (full)"), (results.test_leak_free, "Testing (leak-free)")):
        if r is not None:
            recalls = ", ".join(f"{c} {v['recall']:.3f}" for c, v in r.per_class.items())
            lines.append(
                f"{title}: accuracy {r.accuracy:.4f} on {r.samples} images, macro F1 {r.macro_f1:.4f}; "
                f"recall: {recalls}"
            )
    return lines + results.notes + [study.set_line(name, r) for name, r in results.external.items()]


def evaluate_checkpoint(
    checkpoint: Path,
    data: list[Path],
    study: Study,
    out: Path | None = None,
    clean_list: Path | None = None,
    class_map: str | None = None,
    device_name: str = "auto",
    bf16: bool | None = None,
    tta_flip: bool | None = None,
) -> Results:
    """Score a checkpoint on each of `data` (a dataset root with Testing/, or a folder of class
    folders); write metrics.json, predictions.csv (one line per image), report.md and plots to `out`
    (default: beside the checkpoint). bf16: None autocasts where the device supports it. tta_flip:
    None scores as the checkpoint records; True or False averages (or not) each image with its mirror."""
    from .report import evaluation_report, plot_confusion, testing_panels

    predictor = Predictor.load(checkpoint, device_name, bf16=bf16, tta_flip=tta_flip)
    mapping = parse_class_map(class_map)
    check_class_map(mapping, class_folder_names(data))
    out = Path(out) if out else Path(checkpoint).parent / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    about = {"checkpoint": str(checkpoint), "head_crop": predictor.prep.head_crop}
    about |= {"normalize": predictor.prep.normalize, "grey": predictor.prep.grey, "tta_flip": predictor.prep.tta_flip}
    results = Results(predictor.prep.size, about=about)
    roots = [p for p in map(Path, data) if (p / "Testing").is_dir()]
    if len(roots) > 1:
        raise ValueError(
            f"--data names {len(roots)} dataset roots ({', '.join(map(str, roots))}): score one at a "
            "time, or pass their Testing folders as folders of class folders"
        )
    log = PredictionLog(predictor.classes)
    for root in roots:
        test, leak_free = dataset_testing(root, predictor, mapping, clean_list)
        logits = testing_scores(predictor, test, leak_free, results)
        log.add(test.paths, [test.classes[i] for i in test.labels.tolist()], logits)
    folders = [p for p in map(Path, data) if p not in roots]
    figures = score_sets(predictor, folders, study, out, results, mapping, clean_list, log=log)
    atomic_write_text(out / "metrics.json", json.dumps(results.as_dict(), indent=1))
    log.write(out / "predictions.csv")
    panels = testing_panels(results) + [
        (name, r["confusion"]["counts"], r["confusion"]["rows"], r["confusion"]["columns"])
        for name, r in results.external.items()
    ]
    plot_confusion(out / "confusion.png", panels)
    evaluation_report(out, results, {"Confusion matrices": "confusion.png", **figures}, study)
    for line in evaluation_lines(results, study):
        print(line)
    print(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'predictions.csv'} and the plots beside them")
    return results


def class_folder_names(data: list[Path]) -> set[str]:
    """The class folders' names of every dataset root (its Testing/) and folder of class folders."""
    folders = [Path(p) / "Testing" if (Path(p) / "Testing").is_dir() else Path(p) for p in data]
    return {c.name for f in folders if f.is_dir() for c in f.iterdir() if c.is_dir()}


def dataset_testing(
    root: Path, predictor: Predictor, mapping: dict[str, str], clean_list: Path | None
) -> tuple[Split, np.ndarray | None]:
    """A dataset's Testing split (its class names matched to the checkpoint's) and its leak-free rows:
    from the clean list, or computed against its Training split when it has one."""
    head_crop = predictor.prep.head_crop
    test = load_split(root, "Testing", head_crop=head_crop)
    names = [resolve_class(c, predictor.classes, mapping) for c in test.classes]
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


class PredictionLog:
    """One line per scored image: its path, true class, predicted class and every class's probability."""

    def __init__(self, classes: list[str]) -> None:
        self.classes = classes
        self.rows: list[list[str]] = []

    def add(self, paths: list[str], truth: list[str], logits: torch.Tensor) -> None:
        for path, true, p in zip(paths, truth, logits.softmax(1).tolist()):
            predicted = self.classes[max(range(len(p)), key=p.__getitem__)]
            self.rows.append([str(path), true, predicted] + [repr(v) for v in p])

    def write(self, path: Path) -> None:
        """predictions.csv (probabilities in full float precision)."""
        import csv
        import io

        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["path", "true", "predicted"] + [f"p_{c}" for c in self.classes])
        writer.writerows(self.rows)
        atomic_write_text(path, text.getvalue())
