"""The training loop and `fit`: SGD with StepLR or one-cycle, bf16 autocast, DDP, resumable.

fit(config) runs one experiment end to end. `_fit` reads as its steps, each a comment:
- set up: the device, the seed, the run folder (fit takes and locks it; run_folder.py);
- data: decoded once, moved to the device once, a validation split carved from Training (run_data);
- model, loader, loss and optimiser (make_optimizer; parallel wraps it for DDP or torch.compile);
- the loop: train_one_epoch, then end_epoch validates and saves (the training state every
  checkpoint_every epochs, from which --resume continues);
- the test: Testing, once, on the best checkpoint (evaluate.test_run).
A study (resnet_scratch/study.py) may add training images and its own loss; the loop knows no study.
"""

import copy
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checkpoint import (
    PENDING_BEST,
    checkpoint_metadata,
    has_state,
    load_model_file,
    load_training_state,
    read_metadata,
    save_model,
    save_training_state,
    unwrap,
)
from .config import Config
from .cost import epoch_macs
from .data.folder import existing_root
from .data.intensity import gin, location_scale, randconv
from .data.loader import Loader, Transform
from .data.run import RunData, load_run_data
from .data.transforms import Augment, eval_transform, train_transform
from .evaluate import test_run
from .loss import CrossEntropy
from .models import MODEL_INFO
from .predictor import Preprocess, logits_of, score
from .pretrained import build, freeze_backbone
from .report import plot_curves
from .run_folder import TensorBoard, append_epoch, check_same_data, start_files, take_run_folder
from .runtime import (
    Distributed,
    Progress,
    RunningStats,
    TrainingDiverged,
    all_ranks_agree,
    bf16_supported,
    git_commit,
    init_distributed,
    resolve_device,
)
from .study import Study


def training_transform(
    config: Config, device: torch.device, mean: tuple, std: tuple, size: int | None = None
) -> Transform:
    """The training loader's transform at `size` px (default: the input size): augmentation (eval
    preprocessing if config.augment is off).

    Under bf16 autocast the first convolution rounds its input to bf16 anyway: the augmented batch
    comes rounded instead, the same numbers at half the bytes.
    """
    dtype = torch.bfloat16 if config.bf16 and bf16_supported(device) else torch.float32
    size, scale = size or config.input_size, (config.crop_scale_min, config.crop_scale_max)
    ratio = (1 / config.crop_ratio_max, config.crop_ratio_max)
    normalize, grey = config.normalize, config.grey
    intensity = intensity_augments(config)

    def transform(images: Tensor, rows: Tensor, g: torch.Generator) -> Tensor:
        if not config.augment:
            return eval_transform(images, size, rows=rows, mean=mean, std=std, normalize=normalize, grey=grey)
        return train_transform(
            images,
            size,
            g,
            scale=scale,
            ratio=ratio,
            dtype=dtype,
            rows=rows,
            mean=mean,
            std=std,
            photometric=config.photometric,
            intensity=intensity,
            normalize=normalize,
            grey=grey,
        )

    return transform


def intensity_augments(config: Config) -> list[Augment]:
    """The intensity augmentations the settings switch on, in the order they run: GIN, RandConv, location-scale."""
    augments: list[Augment] = []
    if config.gin > 0:
        augments.append(partial(gin, p=config.gin, blend=config.gin_blend, depth=config.gin_depth))
    if config.randconv > 0:
        augments.append(
            partial(randconv, p=config.randconv, blend=config.randconv_blend, kernel=config.randconv_kernel)
        )
    if config.location_scale > 0:
        augments.append(partial(location_scale, p=config.location_scale, invert=config.location_scale_invert))
    return augments


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging, as in airbench and "ResNet
    strikes back"): after every step, average <- decay * average + (1 - decay) * weights. BatchNorm's
    running statistics are averaged alike; its batch counter is copied. The average often generalises
    better than the last weights of a short run, and costs one pass over the weights per step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self.decay = decay
        self.pairs: tuple[list, list, list] | None = None  # (averages, currents) of floats, then counters

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards `model`'s current weights. The tensors are paired on the
        first step only: the optimiser and BatchNorm change them in place, so the pairs hold."""
        if self.pairs is None:
            pairs = list(zip(self.model.state_dict().values(), unwrap(model).state_dict().values()))
            floats = [(a, c) for a, c in pairs if a.is_floating_point()]
            counts = [(a, c) for a, c in pairs if not a.is_floating_point()]
            self.pairs = ([a for a, _ in floats], [c for _, c in floats], counts)
        averages, currents, counts = self.pairs
        if averages:
            torch._foreach_lerp_(averages, currents, 1 - self.decay)
        for average, current in counts:
            average.copy_(current)


def train_one_epoch(
    model: nn.Module,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    config: Config,
    device: torch.device,
    progress: Progress | None = None,
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: CrossEntropy | None = None,
    average: WeightAverage | None = None,
) -> dict[str, float]:
    """One pass over the training loader; raises TrainingDiverged on a non-finite loss.

    The running statistics stay on the device and are read only at the progress interval, where a
    non-finite loss is noticed and named by its batch. batch_scheduler, if given, is stepped after
    every batch (one-cycle); epoch schedules are the caller's. loss_fn: plain cross-entropy by default.
    average, if given, follows the weights after every step.
    """
    loss_fn = loss_fn or CrossEntropy(config.label_smoothing, config.aux_weight)
    use_bf16 = config.bf16 and bf16_supported(device)
    model.train()
    stats = RunningStats(device)
    batches = len(loader)
    every = max(1, batches // 10)
    started = time.perf_counter()
    for step, (x, y) in enumerate(loader, start=1):
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = model(x)
        loss, logits = loss_fn(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(model)
        if batch_scheduler is not None:
            batch_scheduler.step()
        stats.add(step, loss.detach(), loss_fn.correct(logits.detach(), y), len(y))
        if step % every == 0 or step == batches:
            running_loss, running_accuracy = stats.read()  # one synchronisation
            if progress is not None:
                progress.update(step, running_loss, running_accuracy, stats.seen)
    seconds = time.perf_counter() - started
    mean_loss, accuracy, images = stats.totals()
    return {
        "loss": mean_loss,
        "accuracy": accuracy,
        "images": int(images),
        "images_per_s": images / seconds,
        "seconds": seconds,
    }


def fit(config: Config, resume: bool = False, study: Study | None = None, tensorboard: bool = False) -> Path:
    """Train per `config` in runs_dir/name (continuing it if `resume`); returns the run folder.
    tensorboard: also log each epoch's numbers for TensorBoard (RUN/tensorboard), if it is installed.

    Under torchrun every process trains its shard of each global batch (DDP); only rank 0
    evaluates, prints and writes files (and holds the run folder's lock).
    """
    existing_root(config.data)  # before the run folder is taken: no folder is left for a run that cannot start
    run = Path(config.runs_dir) / config.name
    device = resolve_device(config.device)
    process = init_distributed(device)
    if device.type == "cuda" and process.world_size > 1:
        device = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(device)
    if config.batch_size % process.world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split evenly across {process.world_size} processes")
    lock, refused = None, None
    if process.main:
        try:
            lock = take_run_folder(run, resume)
        except (OSError, ValueError) as e:
            refused = e
    # Every rank learns whether rank 0 took the folder: otherwise the others would wait for it in
    # DDP's first collective until the timeout.
    try:
        if not all_ranks_agree(refused is None, device, process):
            raise refused or FileExistsError(f"rank 0 could not take the run folder {run}; its error says why")
        _fit(config, resume, run, device, process, study or Study(), tensorboard)
    finally:
        if lock is not None:
            lock.release()
        if dist.is_initialized():  # an error on the way: leave no gloo or nccl thread running at exit
            dist.destroy_process_group()
    return run


def _fit(
    config: Config, resume: bool, run: Path, device: torch.device, process: Distributed, study: Study, tensorboard: bool
) -> None:
    # Set up
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(config.seed)
    use_bf16 = config.bf16 and bf16_supported(device)
    log = (lambda line: print(line, flush=True)) if process.main else (lambda line: None)
    precision = "bf16" if use_bf16 else "fp32"
    log(f"run {run} on {device} x {process.world_size} ({precision}), {config.model}, commit {git_commit()}")

    # Data
    data = run_data(config, study)
    if resume and process.main:
        check_same_data(run, data)
    log(data_line(data, study, config))
    data.train = data.train.to(device)  # once per run: every epoch and every validation reads it there

    # Model, its loader, loss and optimiser
    info = MODEL_INFO[config.model]  # its normalisation: what pretrained weights expect
    resuming = resume and has_state(run)
    model = make_model(config, len(data.train.classes), device, run if resuming else None)
    transform = training_transform(config, device, info.mean, info.std)
    loader = Loader(
        data.train,
        config.batch_size // process.world_size,  # each process's share of the global batch
        transform,
        device=device,
        seed=config.seed,
        indices=data.train_rows,
        rank=process.rank,
        world_size=process.world_size,
    )
    loss_fn = study.loss(config, data.train.classes, data.extra_count)
    optimizer, scheduler = make_optimizer(config, model, len(loader))
    done, best = 0, {"val_accuracy": -1.0, "epoch": 0}  # epochs count from 1; 0 is none
    if resuming:
        record = load_training_state(run, model, optimizer, scheduler)
        done, best = record["epoch"], record["best"]
        log(f"resuming after epoch {done} (best so far: epoch {best['epoch']})")
    if process.main:
        start_files(run, config, device, data, done)
    step_model = parallel(model, config, device, process)
    board = TensorBoard(run) if tensorboard and process.main else None
    average = weight_average(config, model, run if resuming else None)
    saver = Saver(run, config, model, optimizer, scheduler, study.checkpoint_extra(config), board, average)

    # The loop
    prep = run_preprocess(config, use_bf16)
    batch_scheduler = scheduler if config.schedule == "onecycle" else None
    for epoch in range(done + 1, config.epochs + 1):
        loader.set_epoch(epoch - 1)  # the shuffle's seed: kept from when epochs counted from 0
        if config.min_image_size is not None:  # progressive resizing: this epoch's size
            loader.transform = training_transform(config, device, info.mean, info.std, config.epoch_size(epoch))
        progress = Progress(epoch, config.epochs, len(loader)) if process.main else None
        lr = optimizer.param_groups[0]["lr"]
        try:
            stats = train_one_epoch(
                step_model, loader, optimizer, config, device, progress, batch_scheduler, loss_fn, average
            )
        except TrainingDiverged as e:
            kept = run / "last.safetensors"
            kept = f"; the last good weights are {kept}" if kept.exists() else ""
            raise TrainingDiverged(f"epoch {epoch}: {e}{kept}. Try a lower --lr.") from None
        if batch_scheduler is None:
            scheduler.step()
        if process.main:
            best = end_epoch(saver, data, prep, epoch, lr, stats, best)
    if board is not None:
        board.close()
    if process.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()

    # The test
    if process.main:
        test_run(run, config, data, prep, device, best, study)


def run_preprocess(config: Config, bf16: bool) -> Preprocess:
    """How the run's checkpoints are evaluated: its size, its model's normalisation statistics and the
    settings that prepare or score an image (head crop, normalize, grey, tta_flip)."""
    info = MODEL_INFO[config.model]
    return Preprocess(
        config.input_size,
        info.mean,
        info.std,
        bf16,
        config.channels_last,
        config.head_crop,
        config.normalize,
        config.grey,
        config.tta_flip,
    )


def weight_average(config: Config, model: nn.Module, resumed: Path | None) -> WeightAverage | None:
    """The run's moving average of the weights, if config.ema asks for one; a run `resumed` from its
    folder goes on from the average it saved there."""
    if not config.ema:
        return None
    average = WeightAverage(model, config.ema)
    if resumed is not None and (resumed / "ema.safetensors").is_file():
        average.model.load_state_dict(load_model_file(resumed / "ema.safetensors")[0])
    return average


def run_data(config: Config, study: Study) -> RunData:
    """The run's data: both splits decoded, the validation split carved, the study's extra images added."""
    data = load_run_data(
        existing_root(config.data),
        val_fraction=config.val_fraction,
        seed=config.seed,
        cache_dir=config.cache_dir,
        clean_list=config.clean_list,
        head_crop=config.head_crop,
        train_fraction=config.train_fraction,
    )
    if len(data.test) == 0:  # found now, not after every epoch has run
        raise ValueError(f"{config.data}/Testing has no image that decodes: there is nothing to test on")
    train, extra = study.extra_training(config, data.train)
    if extra:
        data.with_extra(train, extra)
    return data


def data_line(data: RunData, study: Study, config: Config) -> str:
    """The console line that says what the run trains, validates and tests on."""
    extra = f" (+ {data.extra_count} {study.extra_images(config)})" if data.extra_count else ""
    return (
        f"data: {len(data.train_rows) - data.extra_count} train{extra} / {len(data.val_rows)} val (from Training), "
        f"{len(data.test)} test ({len(data.leak_free_rows)} leak-free)"
    )


def make_model(config: Config, num_classes: int, device: torch.device, resumed: Path | None) -> nn.Module:
    """The model of the config on the device: fresh, or from starting weights (frozen backbone if asked).
    A run `resumed` from its saved state is built as its checkpoints record it, without reading the
    starting weights: the state replaces every weight, and the file may be gone by now."""
    options = config.model_options()
    if resumed is None:
        model = build(config.model, num_classes=num_classes, weights=config.weights, freeze=config.freeze, **options)
    else:
        options |= saved_options(resumed)
        model = build(config.model, num_classes=num_classes, **options)
        if config.freeze:
            freeze_backbone(model, MODEL_INFO[config.model].heads)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def saved_options(run: Path) -> dict[str, object]:
    """The builder options a run's checkpoints record (InceptionV3's transform_input comes from its
    starting weights): from last.safetensors, or best.safetensors if that one is gone."""
    for name in ("last.safetensors", "best.safetensors"):
        if (run / name).is_file():
            return read_metadata(run / name).get("options", {})
    raise ValueError(f"{run} holds neither last.safetensors nor best.safetensors: how its model was built is lost")


def make_optimizer(
    config: Config, model: nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD on the trainable parameters, with StepLR (stepped per epoch) or one-cycle (per batch)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov
    )
    if config.schedule == "onecycle":  # warm up to lr, then anneal to ~0, stepped every batch
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)


def parallel(model: nn.Module, config: Config, device: torch.device, process: Distributed) -> nn.Module:
    """The module the loop steps: DDP under torchrun (SyncBatchNorm on CUDA), compiled if asked."""
    if process.world_size > 1:
        if device.type == "cuda":  # BN statistics over the global batch (torch's is CUDA-only)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if config.compile else model


@dataclass(frozen=True)
class Saver:
    """What end_epoch saves and where: the run folder, the model with its optimiser and schedule, and
    what the study adds to each checkpoint's metadata; the TensorBoard log, if asked."""

    run: Path
    config: Config
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    extra: dict[str, object]
    board: TensorBoard | None = None
    average: WeightAverage | None = None  # when set, the model that is validated, chosen and tested

    def metadata(self, classes: list[str], prep: Preprocess, epoch: int, val_accuracy: float) -> dict:
        """The checkpoint metadata of this run's model after `epoch`."""
        config, options = self.config, self.config.model_options()
        if config.model == "inception_v3":
            options["transform_input"] = unwrap(self.model).transform_input
        extra = {"epoch": epoch, "val_accuracy": val_accuracy} | self.extra
        return checkpoint_metadata(
            config.model,
            classes,
            prep.size,
            options,
            prep.mean,
            prep.std,
            config.head_crop,
            normalize=prep.normalize,
            grey=prep.grey,
            tta_flip=prep.tta_flip,
            **extra,
        )


def validate(model: nn.Module, data: RunData, rows, prep: Preprocess) -> dict[str, float]:
    """Loss and accuracy on Training's rows `rows`, in eval mode on centre crops."""
    logits = logits_of(model, data.train.images, rows, prep)
    labels = data.train.labels[torch.as_tensor(rows, dtype=torch.long, device=data.train.labels.device)]
    scores = score(logits, labels, data.train.classes)
    return {"loss": scores.loss, "accuracy": scores.accuracy}


def end_epoch(
    saver: Saver, data: RunData, prep: Preprocess, epoch: int, lr: float, train_stats: dict, best: dict
) -> dict:
    """Validate, log the epoch (metrics.jsonl and .csv, curves.png, TensorBoard) and write a pending
    best; every config.checkpoint_every epochs (and at the last) the last weights and the training
    state, which commits the epoch. `epoch` counts from 1. Returns the new best."""
    run, config, model = saver.run, saver.config, saver.model
    chosen = saver.average.model if saver.average else model  # the weights a run's result comes from
    val = validate(chosen, data, data.val_rows, prep)
    line = {"epoch": epoch, "lr": lr, "train_loss": train_stats["loss"], "train_accuracy": train_stats["accuracy"]}
    line |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
    if saver.average:  # the raw weights, beside their average
        raw = validate(model, data, data.val_rows, prep)
        line |= {"val_loss_raw": raw["loss"], "val_accuracy_raw": raw["accuracy"]}
    line |= {"images_per_s": train_stats["images_per_s"], "seconds": train_stats["seconds"]}
    size = config.epoch_size(epoch)
    line |= {"image_size": size, "train_macs": epoch_macs(config, train_stats["images"], len(data.train.classes), size)}
    if config.train_eval:  # the training rows scored exactly as validation is: eval mode, centre crops
        seen = validate(model, data, data.train_eval_rows, prep)
        line |= {"train_eval_loss": seen["loss"], "train_eval_accuracy": seen["accuracy"]}
    meta = saver.metadata(data.train.classes, prep, epoch=epoch, val_accuracy=val["accuracy"])
    if val["accuracy"] > best["val_accuracy"]:
        best = {"val_accuracy": val["accuracy"], "epoch": epoch}
        save_model(run / PENDING_BEST, chosen, meta)  # becomes best.safetensors when the state commits
    commit = epoch % config.checkpoint_every == 0 or epoch == config.epochs
    if commit:
        save_model(run / "last.safetensors", model, meta)
        if saver.average:  # before the state: a resumed run finds the average of the epoch it resumes after
            save_model(run / "ema.safetensors", saver.average.model, meta)
    append_epoch(run, line)
    try:
        plot_curves(run)  # a long run can be watched
    except PermissionError as e:  # open in a viewer, which locks it on Windows: the run goes on
        print(f"{run / 'curves.png'} not redrawn ({e.strerror})", flush=True)
    if saver.board is not None:
        saver.board.add(line)
    if commit:
        save_training_state(run, model, saver.optimizer, saver.scheduler, epoch, {"best": best})
    mark = "  (best)" if best["epoch"] == epoch else ""
    print(f"  val loss {val['loss']:.4f} acc {val['accuracy']:.4f}{mark}", flush=True)
    return best
