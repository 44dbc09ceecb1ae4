"""The training loop and `fit`: SGD with StepLR or one-cycle, bf16 autocast, DDP, resumable.

fit(config) runs one experiment end to end: data (decoded once, moved to the device once), a
validation split carved from Training for model selection, epochs with a live progress line, a
checkpoint and the training state after every epoch, then Testing evaluated once, on the best
checkpoint, on the full split and on the leak-free subset (and on other collections when they are
present), and the report.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from .checkpoint import (
    PENDING_BEST,
    RunLock,
    checkpoint_metadata,
    load_training_state,
    model_from_checkpoint,
    read_epochs,
    read_state_record,
    reconcile_best,
    save_model,
    save_training_state,
    unwrap,
)
from .config import Config, ConfigError, load_config, read_toml, to_dict
from .data.labels import tumour_classes
from .data.loader import Loader, Transform
from .data.run import WEAK, RunData, load_run_data
from .data.transforms import eval_transform, train_transform
from .files import atomic_write_text, remove_stale_temporaries
from .inference import Preprocess, evaluate, logits_of, report_on
from .models import MODEL_INFO
from .models.inception import InceptionOutputs
from .pretrained import build
from .runtime import (
    Distributed,
    Progress,
    TrainingDiverged,
    all_ranks_agree,
    bf16_supported,
    environment,
    git_commit,
    init_distributed,
    resolve_device,
)

# Settings that --resume may change: where and how the run executes, and what it is scored on,
# never what it trains.
RESUMABLE_CHANGES = frozenset({"device", "cache_dir", "compile", "data", "external", "clean_list"})


def loss_of(
    output: Tensor | InceptionOutputs, target: Tensor, config: Config, tumour: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(loss, logits): cross-entropy, plus InceptionV3's weighted auxiliary loss in training.

    tumour (the tumour classes' indices) turns on the partial-label loss for weakly labelled images
    (target WEAK): -log(p_glioma + p_meningioma + p_pituitary), whichever tumour it is.
    """
    if isinstance(output, InceptionOutputs):
        main = cross_entropy(output.logits, target, config.label_smoothing, tumour)
        aux = cross_entropy(output.aux_logits, target, config.label_smoothing, tumour)
        return main + config.aux_weight * aux, output.logits
    return cross_entropy(output, target, config.label_smoothing, tumour), output


def cross_entropy(logits: Tensor, target: Tensor, smoothing: float, tumour: Tensor | None) -> Tensor:
    """Mean cross-entropy; with `tumour`, rows labelled WEAK take -log of their tumour classes' total
    probability instead (computed for every row and selected, so the step never waits on the device)."""
    logits = logits.float()
    if tumour is None:
        return F.cross_entropy(logits, target, label_smoothing=smoothing)
    weak = target == WEAK
    full = F.cross_entropy(logits, target.clamp(min=0), label_smoothing=smoothing, reduction="none")
    partial = torch.logsumexp(logits, 1) - torch.logsumexp(logits[:, tumour], 1)
    return torch.where(weak, partial, full).mean()


def correct_of(logits: Tensor, target: Tensor, tumour: Tensor | None) -> Tensor:
    """How many predictions are right (a weakly labelled image: when called any tumour class)."""
    predicted = logits.argmax(1)
    right = predicted == target
    if tumour is not None:
        right = torch.where(target == WEAK, torch.isin(predicted, tumour), right)
    return right.sum()


def training_transform(config: Config, device: torch.device, mean: tuple, std: tuple) -> Transform:
    """The training loader's transform: augmentation (eval preprocessing if config.augment is off).

    Under bf16 autocast the first convolution rounds its input to bf16 anyway: the augmented batch
    comes rounded instead, the same numbers at half the bytes.
    """
    dtype = torch.bfloat16 if config.bf16 and bf16_supported(device) else torch.float32
    size = config.input_size

    def transform(images: Tensor, rows: Tensor, g: torch.Generator) -> Tensor:
        if not config.augment:
            return eval_transform(images, size, rows=rows, mean=mean, std=std)
        return train_transform(
            images,
            size,
            g,
            scale=(config.crop_scale_min, 1.0),
            dtype=dtype,
            rows=rows,
            mean=mean,
            std=std,
            photometric=config.photometric,
        )

    return transform


def train_one_epoch(
    model: nn.Module,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    config: Config,
    device: torch.device,
    progress: Progress | None = None,
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    tumour: Tensor | None = None,
) -> dict[str, float]:
    """One pass over the training loader; raises TrainingDiverged on a non-finite loss.

    Running sums stay on the device and are read (one synchronisation) only at the progress
    interval; a non-finite loss is noticed there and named by its batch. batch_scheduler, if given,
    is stepped after every batch (one-cycle); epoch schedules are the caller's.
    """
    model.train()
    use_bf16 = config.bf16 and bf16_supported(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # batch number of the first non-finite loss
    bad_loss = torch.zeros((), device=device)
    seen, batches = 0, len(loader)
    every = max(1, batches // 10)
    started = time.perf_counter()
    for step, (x, y) in enumerate(loader, start=1):
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = model(x)
        loss, logits = loss_of(output, y, config, tumour)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        value = loss.detach()
        newly_bad = (first_bad < 0) & ~torch.isfinite(value)
        first_bad = torch.where(newly_bad, step, first_bad)
        bad_loss = torch.where(newly_bad, value.float(), bad_loss)
        loss_sum += value.double() * len(y)
        correct += correct_of(logits.detach(), y, tumour)
        seen += len(y)
        if step % every == 0 or step == batches:
            total, right, bad = torch.stack([loss_sum, correct.double(), first_bad.double()]).tolist()  # one sync
            if bad >= 0:
                raise TrainingDiverged(f"the loss became {bad_loss.item()} at batch {int(bad)} of this epoch")
            if progress is not None:
                progress.update(step, total / seen, right / seen, seen)
    seconds = time.perf_counter() - started
    totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=device)])
    if dist.is_initialized():  # every rank's share of the epoch
        dist.all_reduce(totals)
    total_loss, right, seen_all = totals.tolist()
    return {
        "loss": total_loss / max(seen_all, 1),
        "accuracy": right / max(seen_all, 1),
        "images_per_s": seen_all / seconds,
        "seconds": seconds,
    }


def resume_config(run: Path, flags: dict[str, object], config_file: Path | None = None) -> Config:
    """The settings of the run in `run`, continued: a changed setting that decides what is trained
    is refused (a new lr or schedule is a new run), one of RESUMABLE_CHANGES is taken."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} has no config.json: it is not a run folder that can be resumed")
    try:
        saved = json.loads(path.read_text())["config"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path} is not a run's config.json") from None
    saved |= {"runs_dir": str(Path(run).parent), "name": Path(run).name}
    base = load_config(None, saved)
    asked = load_config(None, {**saved, **(read_toml(config_file) if config_file else {}), **flags})
    changed = [k for k, v in to_dict(asked).items() if v != getattr(base, k) and k not in RESUMABLE_CHANGES]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"--resume continues {run} with its own settings, and {k} = {getattr(asked, k)!r} differs from its "
            f"{getattr(base, k)!r}: to train with other settings start a new run (another --name), from this "
            f"run's weights if you like (--weights {Path(run) / 'last.safetensors'})"
        )
    return asked


def fit(config: Config, resume: bool = False) -> Path:
    """Train per `config` in runs_dir/name (continuing it if `resume`); returns the run folder.

    Under torchrun every process trains its shard of each global batch (DDP); only rank 0
    evaluates, prints and writes files (and holds the run folder's lock).
    """
    run = Path(config.runs_dir) / config.name
    device = resolve_device(config.device)
    place = init_distributed(device)
    if device.type == "cuda" and place.world_size > 1:
        device = torch.device("cuda", place.local_rank)
        torch.cuda.set_device(device)
    if config.batch_size % place.world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split evenly across {place.world_size} processes")
    lock, refused = None, None
    if place.main:
        try:
            lock = take_run_folder(run, resume)
        except (OSError, ValueError) as e:
            refused = e
    # Every rank learns whether rank 0 took the folder: otherwise the others would wait for it in
    # DDP's first collective until the timeout.
    try:
        if not all_ranks_agree(refused is None, device, place):
            raise refused or FileExistsError(f"rank 0 could not take the run folder {run}; its error says why")
        _fit(config, resume, run, device, place)
    finally:
        if lock is not None:
            lock.release()
    return run


def take_run_folder(run: Path, resume: bool) -> RunLock:
    """Check that `run` may be written (new, or resumed), create it and lock it."""
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"{run} exists and is not a folder: choose another --name")
    if run.exists() and not resume and any(p.name != ".lock" for p in run.iterdir()):
        raise FileExistsError(f"{run} already holds a run: resume it with --resume {run}, or choose another --name")
    run.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run)
    try:
        remove_stale_temporaries(run)
        if resume and (run / "state.json").is_file():  # under the lock: one process renames best files
            reconcile_best(run, read_state_record(run))
    except BaseException:
        lock.release()
        raise
    return lock


def _fit(config: Config, resume: bool, run: Path, device: torch.device, place: Distributed) -> None:
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(config.seed)
    say = print if place.main else (lambda *args, **kwargs: None)
    use_bf16 = config.bf16 and bf16_supported(device)
    say(
        f"run {run} on {device} x {place.world_size} ({'bf16' if use_bf16 else 'fp32'}), "
        f"{config.model}, commit {git_commit()}",
        flush=True,
    )

    data = load_run_data(
        Path(config.data),
        val_fraction=config.val_fraction,
        seed=config.seed,
        cache_dir=config.cache_dir,
        clean_list=config.clean_list,
        head_crop=config.head_crop,
        train_fraction=config.train_fraction,
        weak_tumour=config.weak_folder,
    )
    if resume and place.main:
        check_same_data(run, data)
    classes = data.train.classes
    weak = f" + {data.weak_count} weakly labelled" if data.weak_count else ""
    say(
        f"data: {len(data.train_rows) - data.weak_count}{weak} train / {len(data.val_rows)} val (from Training), "
        f"{len(data.test)} test ({len(data.leak_free_rows)} leak-free)",
        flush=True,
    )
    data.train = data.train.to(device)  # once per run: every epoch and every validation reads it there

    info = MODEL_INFO[config.model]  # its normalisation: what pretrained weights expect
    model = build(
        config.model, num_classes=len(classes), weights=config.weights, freeze=config.freeze, **config.model_options()
    ).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = Loader(
        data.train,
        config.batch_size // place.world_size,
        training_transform(config, device, info.mean, info.std),
        device=device,
        seed=config.seed,
        indices=data.train_rows,
        rank=place.rank,
        world_size=place.world_size,
    )
    tumour = torch.tensor(tumour_classes(classes), device=device) if data.weak_count else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov
    )
    if config.schedule == "onecycle":  # warm up to lr, then anneal to ~0, stepped every batch
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=len(loader)
        )
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)

    start_epoch, best = 0, {"val_accuracy": -1.0, "epoch": -1}
    if resume and (run / "state.json").is_file():
        record = load_training_state(run, model, optimizer, scheduler)
        start_epoch, best = record["epoch"] + 1, record["best"]
        say(f"resuming after epoch {start_epoch} (best so far: epoch {best['epoch'] + 1})", flush=True)
    if place.main:
        start_files(run, config, device, data, start_epoch)

    step_model: nn.Module = model
    if place.world_size > 1:
        if device.type == "cuda":  # BN statistics over the global batch (torch's is CUDA-only)
            step_model = nn.SyncBatchNorm.convert_sync_batchnorm(step_model)
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        step_model = torch.compile(step_model)

    prep = Preprocess(config.input_size, info.mean, info.std, use_bf16, config.channels_last)
    for epoch in range(start_epoch, config.epochs):
        loader.set_epoch(epoch)
        progress = Progress(epoch, config.epochs, len(loader)) if place.main else None
        lr = optimizer.param_groups[0]["lr"]
        try:
            train_stats = train_one_epoch(
                step_model,
                loader,
                optimizer,
                config,
                device,
                progress,
                scheduler if config.schedule == "onecycle" else None,
                tumour,
            )
        except TrainingDiverged as e:
            kept = (
                f"; the last good weights are {run / 'last.safetensors'}" if (run / "last.safetensors").exists() else ""
            )
            raise TrainingDiverged(f"epoch {epoch + 1}: {e}{kept}. Try a lower --lr.") from None
        if config.schedule == "step":
            scheduler.step()
        if place.main:
            best = end_epoch(run, config, model, optimizer, scheduler, data, prep, epoch, lr, train_stats, best)
    if place.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if place.main:
        final_test(run, config, data, prep, device, best)


def check_same_data(run: Path, data: RunData) -> None:
    """On resume: the data must split into the classes and sizes the run started with (if it got as far
    as recording them: a run killed before it wrote config.json starts again, in place)."""
    if not (run / "config.json").is_file():
        return
    recorded = json.loads((run / "config.json").read_text()).get("data", {})
    now = data_record(data)
    for key in ("classes", "train", "val"):
        if key in recorded and recorded[key] != now[key]:
            raise ValueError(
                f"--resume {run}: the data now gives {key} = {now[key]}, the run started with "
                f"{recorded[key]}; a run continues on the data it started on"
            )


def data_record(data: RunData) -> dict[str, object]:
    """What config.json records of the data."""
    return {
        "classes": data.train.classes,
        "train": len(data.train_rows),
        "val": len(data.val_rows),
        "weak": data.weak_count,
        "test": len(data.test),
        "leak_free_test": len(data.leak_free_rows),
    }


def start_files(run: Path, config: Config, device: torch.device, data: RunData, start_epoch: int) -> None:
    """config.json, and metrics.jsonl without the lines of epochs to be (re)done."""
    metrics_path = run / "metrics.jsonl"
    lines = [e for e in read_epochs(run, drop_torn=True) if e["epoch"] < start_epoch] if metrics_path.is_file() else []
    atomic_write_text(metrics_path, "".join(json.dumps(e) + "\n" for e in lines))
    atomic_write_text(
        run / "config.json",
        json.dumps(
            {
                "config": to_dict(config),
                "commit": git_commit(),
                "environment": environment(device),
                "data": data_record(data),
            },
            indent=1,
        ),
    )


def run_metadata(config: Config, classes: list[str], prep: Preprocess, model: nn.Module, **extra: object) -> dict:
    """The checkpoint metadata of this run's model."""
    options = config.model_options()
    if config.model == "inception_v3":
        options["transform_input"] = unwrap(model).transform_input
    if config.weak_folder:  # evaluate then scores that folder on its held-out part only
        extra["weak_trained_on"] = config.weak_folder.name
    return checkpoint_metadata(
        config.model, classes, prep.size, options, prep.mean, prep.std, config.head_crop, **extra
    )


def end_epoch(
    run: Path,
    config: Config,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: RunData,
    prep: Preprocess,
    epoch: int,
    lr: float,
    train_stats: dict,
    best: dict,
) -> dict:
    """Validate, write the metrics line and a pending best; every config.checkpoint_every epochs (and at
    the last) the last weights and the training state, which commits the epoch. Returns the new best."""
    val = evaluate(model, data.train, data.val_rows, prep)
    line = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": train_stats["loss"],
        "train_accuracy": train_stats["accuracy"],
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "images_per_s": train_stats["images_per_s"],
        "seconds": train_stats["seconds"],
    }
    if config.train_eval:  # the training rows scored exactly as validation is: eval mode, centre crops
        seen = evaluate(model, data.train, data.train_eval_rows, prep)
        line |= {"train_eval_loss": seen["loss"], "train_eval_accuracy": seen["accuracy"]}
    meta = run_metadata(config, data.train.classes, prep, model, epoch=epoch, val_accuracy=val["accuracy"])
    if val["accuracy"] > best["val_accuracy"]:
        best = {"val_accuracy": val["accuracy"], "epoch": epoch}
        save_model(run / PENDING_BEST, model, meta)  # becomes best.safetensors when the state commits
    commit = (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs
    if commit:
        save_model(run / "last.safetensors", model, meta)
    earlier = [e for e in read_epochs(run) if e["epoch"] < epoch]
    atomic_write_text(run / "metrics.jsonl", "".join(json.dumps(e) + "\n" for e in earlier + [line]))
    if commit:
        save_training_state(run, model, optimizer, scheduler, epoch, {"best": best})
    print(
        f"  val loss {val['loss']:.4f} acc {val['accuracy']:.4f}{'  (best)' if best['epoch'] == epoch else ''}",
        flush=True,
    )
    return best


def final_test(run: Path, config: Config, data: RunData, prep: Preprocess, device: torch.device, best: dict) -> None:
    """Testing, once, on the best checkpoint (chosen on the validation split alone); the other
    collections when present; the report."""
    from .evaluate import external_sets, plot_errors, score_folder, summarize
    from .report import (
        plot_confusion,
        plot_curves,
        plot_predictions,
        testing_grad_cam,
        testing_panels,
        write_report,
    )

    best_model, meta = model_from_checkpoint(run / "best.safetensors")
    if meta.get("epoch") != best["epoch"]:
        raise ValueError(
            f"{run / 'best.safetensors'} holds epoch {meta.get('epoch')}, the training state's best "
            f"is epoch {best['epoch']}: the run folder was changed by hand"
        )
    best_model = best_model.to(device)
    if config.channels_last:
        best_model = best_model.to(memory_format=torch.channels_last)
    test = data.test.to(device)
    logits = logits_of(best_model, test.images, np.arange(len(test)), prep)
    classes = data.train.classes
    results: dict = {
        "best_epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "input_size": prep.size,
        "test": report_on(logits, test.labels, classes),
        "test_leak_free": report_on(logits[data.leak_free_rows], test.labels.cpu()[data.leak_free_rows], classes),
        "external": {},
    }
    figures = {
        "Confusion matrices on Testing": "confusion.png",
        "Training curves": "curves.png",
        "Testing images: mistakes first": "predictions.png",
        "Where the model looks (Grad-CAM)": "gradcam.png",
    }
    plot_curves(run)
    plot_confusion(run / "confusion.png", testing_panels(results))
    plot_predictions(run / "predictions.png", test.images, test.labels, logits, classes)
    testing_grad_cam(run / "gradcam.png", best_model, test.images, test.labels, logits, classes, prep)
    for folder in external_sets(config.external):
        try:
            scored = score_folder(best_model, meta, folder, device, cache_dir=config.cache_dir, bf16=prep.bf16)
        except ValueError as e:  # e.g. class folders this model has no class for: the run itself is done
            print(f"external set {folder} not scored: {e}", flush=True)
            continue
        results["external"][scored.name] = summarize(scored, classes)
        figure = plot_errors(run / f"errors-{scored.name}.png", best_model, scored, classes, prep)
        figures[f"{scored.name}: the most confident mistakes"] = figure.name
    atomic_write_text(run / "metrics.json", json.dumps(results, indent=1))
    write_report(run, results, figures)
    print_summary(run, results)


def print_summary(run: Path, results: dict) -> None:
    """The end-of-run table: per-epoch metrics, then Testing on the full split and leak-free subset,
    then the other collections."""
    lines = read_epochs(run)
    print(
        f"\n{'epoch':>5} {'lr':>8} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} "
        f"{'img/s':>7} {'s':>6}"
    )
    for e in lines:
        print(
            f"{e['epoch'] + 1:>5} {e['lr']:>8.1e} {e['train_loss']:>10.4f} {e['train_accuracy']:>9.4f} "
            f"{e['val_loss']:>9.4f} {e['val_accuracy']:>8.4f} {e['images_per_s']:>7.1f} {e['seconds']:>6.1f}"
        )
    from .evaluate import evaluation_lines

    for line in evaluation_lines({**results, "sets": results.get("external", {})}):
        print(line)
    print(
        f"best epoch {results['best_epoch'] + 1} (val accuracy {results['val_accuracy']:.4f}); "
        f"report: {run / 'report.md'}"
    )
