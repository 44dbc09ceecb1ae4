"""The training loop: train_one_epoch, evaluate, fit. SGD + StepLR, bf16 autocast, resumable.

fit(config) runs one experiment end to end: data (decoded once), a validation split carved from
Training for model selection, epochs with a live progress line, a checkpoint and the training state
after every epoch, then Testing evaluated once, on the best checkpoint, on the full split and on the
leak-free subset, and the report.
"""

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from . import __version__
from .checkpoint import atomic_write_text, load_model_file, read_epochs, load_training_state, save_model, save_training_state, unwrap
from .config import Config, to_dict
from .data import Split, load_split
from .data.audit import leak_free_indices
from .data.loader import Loader, Transform, train_val_split
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from .metrics import classification_report
from .models import INPUT_SIZES, build
from .models.inception import InceptionOutputs


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU; otherwise the named device, which must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but no CUDA device is available")
    return device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only the main process prints and writes files."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) if WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    place = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return place


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast here: CUDA with bf16, or a CPU with avx512_bf16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_options(config: Config) -> dict[str, object]:
    """The builder options a config asks for (only those the model takes)."""
    options: dict[str, object] = {}
    if config.model.startswith("resnet"):
        options |= {"skip": config.skip, "stride_on": config.stride_on}
    if config.model == "inception_v3":
        options["aux_logits"] = config.aux_logits
    if config.dropout is not None:
        options["dropout"] = config.dropout
    return options


def loss_of(output: Tensor | InceptionOutputs, target: Tensor, config: Config) -> tuple[Tensor, Tensor]:
    """(loss, logits): cross-entropy, plus InceptionV3's weighted auxiliary loss in training."""
    if isinstance(output, InceptionOutputs):
        main = F.cross_entropy(output.logits.float(), target, label_smoothing=config.label_smoothing)
        aux = F.cross_entropy(output.aux_logits.float(), target, label_smoothing=config.label_smoothing)
        return main + config.aux_weight * aux, output.logits
    return F.cross_entropy(output.float(), target, label_smoothing=config.label_smoothing), output


class Progress:
    """One live line per epoch: batches, loss, accuracy, images/s, ETA. In a plain log (not a
    terminal) it prints a line at every tenth of the epoch instead of redrawing."""

    def __init__(self, epoch: int, epochs: int, batches: int, stream=sys.stdout) -> None:
        self.epoch, self.epochs, self.batches, self.stream = epoch, epochs, batches, stream
        self.live = stream.isatty()
        self.start = time.perf_counter()
        self.next_report = 0

    def update(self, done: int, loss: float, accuracy: float, images: int) -> None:
        """Report after `done` batches."""
        if not self.live and done < self.next_report and done != self.batches:
            return
        self.next_report = done + max(1, self.batches // 10)
        elapsed = time.perf_counter() - self.start
        per_batch = elapsed / max(done, 1)
        eta = per_batch * (self.batches - done) + per_batch * self.batches * (self.epochs - self.epoch - 1)
        line = (
            f"epoch {self.epoch + 1}/{self.epochs} [{done}/{self.batches}] loss {loss:.4f} "
            f"acc {accuracy:.4f} {images / max(elapsed, 1e-9):.0f} img/s ETA {eta / 60:.1f} min"
        )
        print(("\r" + line) if self.live else line, end="" if self.live and done < self.batches else "\n",
              file=self.stream, flush=True)


def training_transform(config: Config, size: int, device: torch.device) -> Transform:
    """The training loader's transform: augmentation (eval preprocessing if config.augment is off).

    Under bf16 autocast the first convolution rounds its input to bf16 anyway: the augmented batch
    comes rounded instead, the same numbers at half the bytes.
    """
    dtype = torch.bfloat16 if config.bf16 and bf16_supported(device) else torch.float32

    def transform(images: Tensor, rows: Tensor, g: torch.Generator) -> Tensor:
        if not config.augment:
            return eval_transform(images, size, rows=rows)
        return train_transform(images, size, g, scale=(config.crop_scale_min, 1.0), dtype=dtype, rows=rows)

    return transform


def train_one_epoch(
    model: nn.Module, loader: Loader, optimizer: torch.optim.Optimizer, config: Config,
    device: torch.device, progress: Progress | None = None,
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, float]:
    """One pass over the training loader; raises TrainingDiverged on a non-finite loss.

    batch_scheduler, if given, is stepped after every batch (one-cycle); epoch schedules are the caller's.
    """
    model.train()
    use_bf16 = config.bf16 and bf16_supported(device)
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader, start=1):
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = model(x)
        loss, logits = loss_of(output, y, config)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss.item()} at batch {step} of this epoch")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if progress is not None:
            progress.update(step, total_loss / seen, correct / seen, seen)
    seconds = time.perf_counter() - start
    if dist.is_initialized():  # every rank's share of the epoch
        totals = torch.tensor([total_loss, correct, seen], dtype=torch.float64)
        dist.all_reduce(totals)
        total_loss, correct, seen = totals[0].item(), int(totals[1]), int(totals[2])
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images_per_s": seen / seconds, "seconds": seconds}


@torch.no_grad()
def predict(model: nn.Module, split: Split, indices: np.ndarray, size: int, config: Config,
            device: torch.device, batch_size: int = 128) -> Tensor:
    """Logits (float32, on the CPU) of split rows `indices`, eval preprocessing, in order."""
    model.eval()
    use_bf16 = config.bf16 and bf16_supported(device)
    loader = Loader(split, batch_size, lambda images, rows, g: eval_transform(images, size, rows=rows), device=device,
                    shuffle=False, indices=indices)
    outputs = []
    for x, _ in loader:
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, len(split.classes))


def evaluate(model: nn.Module, split: Split, indices: np.ndarray, size: int, config: Config,
             device: torch.device) -> dict[str, object]:
    """Loss and the classification report on split rows `indices`."""
    logits = predict(model, split, indices, size, config, device)
    return report_on(logits, split.labels[torch.as_tensor(indices, dtype=torch.long)], split.classes)


def report_on(logits: Tensor, target: Tensor, classes: list[str]) -> dict[str, object]:
    """Classification report plus the (unsmoothed) cross-entropy loss."""
    target = target.cpu()
    report = classification_report(logits, target, classes)
    report["loss"] = float(F.cross_entropy(logits, target)) if len(target) else float("nan")
    return report


def git_commit() -> str:
    """The checkout's commit, with "-dirty" if it has uncommitted changes; "unknown" outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, str]:
    """Versions and the device, for config.json."""
    import numpy
    import PIL

    env = {"resnet_scratch": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "pillow": PIL.__version__, "device": str(device),
           "threads": str(torch.get_num_threads()), "processor": platform.processor() or platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


@dataclass
class RunData:
    """What one run trains and tests on."""

    train: Split
    test: Split
    train_rows: np.ndarray
    val_rows: np.ndarray
    leak_free_rows: np.ndarray


def leak_free_rows(train: Split, test: Split, root: Path, clean_list: str | Path | None,
                   hashes: dict | None = None) -> np.ndarray:
    """Testing rows without a copy in Training: from a clean list (audit --write-clean-list, paths
    relative to root) when one is given, else computed as the audit does."""
    if clean_list:
        listed = set(Path(clean_list).read_text().split())
        return np.array([i for i, p in enumerate(test.paths) if str(Path(p).relative_to(root)) in listed], dtype=np.int64)
    return np.array(leak_free_indices(train, test, hashes=hashes), dtype=np.int64)


def load_run_data(config: Config) -> RunData:
    """Decode both splits, carve the validation split, find the leak-free Testing rows."""
    root = Path(config.data)
    train = load_split(root, "Training", cache_dir=config.cache_dir)
    test = load_split(root, "Testing", classes=train.classes, cache_dir=config.cache_dir)
    hashes = {"exact": {train.name: train.pixel_hashes()}}  # shared by the split and the leak check
    train_rows, val_rows = train_val_split(train.labels, hashes["exact"][train.name], config.val_fraction, config.seed)
    return RunData(train, test, train_rows, val_rows, leak_free_rows(train, test, root, config.clean_list, hashes))


def checkpoint_metadata(config: Config, classes: list[str], size: int, model: nn.Module, **extra: object) -> dict:
    """What a checkpoint needs to be used on its own: architecture, classes, input, options."""
    inner = unwrap(model)
    options = model_options(config)
    if config.model == "inception_v3":
        options["transform_input"] = inner.transform_input
    return {"format": "resnet_scratch.checkpoint/1", "arch": config.model, "classes": classes,
            "num_classes": len(classes), "input_size": size, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD), "options": options, **extra}


def model_from_checkpoint(path: Path) -> tuple[nn.Module, dict[str, object]]:
    """A model rebuilt from a checkpoint's metadata and loaded with its weights (eval mode)."""
    state, meta = load_model_file(Path(path))
    if meta.get("format") != "resnet_scratch.checkpoint/1":
        raise ValueError(f"{path} is not a resnet_scratch training checkpoint")
    model = build(meta["arch"], num_classes=meta["num_classes"], **meta["options"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit {meta['arch']} with {meta['num_classes']} classes: {str(e).splitlines()[0]}") from None
    return model.eval(), meta


def fit(config: Config, resume: bool = False) -> Path:
    """Train per `config` in runs_dir/name (continuing it if `resume`); returns the run folder.

    Under torchrun every process trains its shard of each global batch (DDP); only rank 0
    evaluates, prints and writes files.
    """
    run = Path(config.runs_dir) / config.name
    device = resolve_device(config.device)
    place = init_distributed(device)
    if device.type == "cuda" and place.world_size > 1:
        device = torch.device("cuda", place.local_rank)
        torch.cuda.set_device(device)
    if config.batch_size % place.world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split evenly across {place.world_size} processes")
    if place.main:
        if run.exists() and not resume and any(run.iterdir()):
            raise FileExistsError(f"{run} already holds a run: resume it with --resume {run}, or choose another --name")
        run.mkdir(parents=True, exist_ok=True)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(config.seed)
    say = print if place.main else (lambda *args, **kwargs: None)
    say(f"run {run} on {device} x {place.world_size} ({'bf16' if config.bf16 and bf16_supported(device) else 'fp32'}), "
        f"{config.model}, commit {git_commit()}", flush=True)

    data = load_run_data(config)
    classes = data.train.classes
    size = config.image_size or INPUT_SIZES[config.model]
    say(f"data: {len(data.train_rows)} train / {len(data.val_rows)} val (from Training), "
        f"{len(data.test)} test ({len(data.leak_free_rows)} leak-free)", flush=True)

    model = build(config.model, num_classes=len(classes), weights=config.weights, freeze=config.freeze,
                  **model_options(config)).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = Loader(data.train, config.batch_size // place.world_size, training_transform(config, size, device), device=device,
                    seed=config.seed, indices=data.train_rows, rank=place.rank, world_size=place.world_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    if config.schedule == "onecycle":  # warm up to lr, then anneal to ~0, stepped every batch
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=len(loader))
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
            step_model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        step_model = torch.compile(step_model)

    for epoch in range(start_epoch, config.epochs):
        loader.set_epoch(epoch)
        progress = Progress(epoch, config.epochs, len(loader)) if place.main else None
        lr = optimizer.param_groups[0]["lr"]
        try:
            train_stats = train_one_epoch(step_model, loader, optimizer, config, device, progress,
                                          scheduler if config.schedule == "onecycle" else None)
        except TrainingDiverged as e:
            kept = f"; the last good weights are {run / 'last.safetensors'}" if (run / "last.safetensors").exists() else ""
            raise TrainingDiverged(f"epoch {epoch + 1}: {e}{kept}. Try a lower --lr.") from None
        if config.schedule == "step":
            scheduler.step()
        if place.main:
            best = end_epoch(run, config, model, optimizer, scheduler, data, size, device, epoch, lr, train_stats, best)
    if place.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if place.main:
        final_test(run, config, data, size, device, best)
    return run


def start_files(run: Path, config: Config, device: torch.device, data: RunData, start_epoch: int) -> None:
    """config.json, and metrics.jsonl without the lines of epochs to be (re)done."""
    metrics_path = run / "metrics.jsonl"
    lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
    atomic_write_text(metrics_path, "".join(l + "\n" for l in lines if json.loads(l)["epoch"] < start_epoch))
    atomic_write_text(run / "config.json", json.dumps(
        {"config": to_dict(config), "commit": git_commit(), "environment": environment(device),
         "data": {"classes": data.train.classes, "train": len(data.train_rows), "val": len(data.val_rows),
                  "test": len(data.test), "leak_free_test": len(data.leak_free_rows)}}, indent=1))


def end_epoch(run: Path, config: Config, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler, data: RunData, size: int, device: torch.device,
              epoch: int, lr: float, train_stats: dict, best: dict) -> dict:
    """Validate, write the metrics line, best/last weights and the training state; the new best."""
    val = evaluate(model, data.train, data.val_rows, size, config, device)
    line = {"epoch": epoch, "lr": lr, "train_loss": train_stats["loss"], "train_accuracy": train_stats["accuracy"],
            "val_loss": val["loss"], "val_accuracy": val["accuracy"], "images_per_s": train_stats["images_per_s"],
            "seconds": train_stats["seconds"]}
    meta = checkpoint_metadata(config, data.train.classes, size, model, epoch=epoch, val_accuracy=val["accuracy"])
    if val["accuracy"] > best["val_accuracy"]:
        best = {"val_accuracy": val["accuracy"], "epoch": epoch}
        save_model(run / "best.safetensors", model, meta)
    save_model(run / "last.safetensors", model, meta)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    save_training_state(run, model, optimizer, scheduler, epoch, {"best": best})
    print(f"  val loss {val['loss']:.4f} acc {val['accuracy']:.4f}{'  (best)' if best['epoch'] == epoch else ''}",
          flush=True)
    return best


def final_test(run: Path, config: Config, data: RunData, size: int, device: torch.device, best: dict) -> None:
    """Testing, once, on the best checkpoint (chosen on the validation split alone); the report."""
    best_model, _ = model_from_checkpoint(run / "best.safetensors")
    best_model = best_model.to(device)
    if config.channels_last:
        best_model = best_model.to(memory_format=torch.channels_last)
    logits = predict(best_model, data.test, np.arange(len(data.test)), size, config, device)
    classes = data.train.classes
    results = {
        "best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"], "input_size": size,
        "test": report_on(logits, data.test.labels, classes),
        "test_leak_free": report_on(logits[data.leak_free_rows], data.test.labels[data.leak_free_rows], classes),
    }
    atomic_write_text(run / "metrics.json", json.dumps(results, indent=1))
    from .report import write_report

    write_report(run, data, logits, results, best_model)
    print_summary(run, results)


def print_summary(run: Path, results: dict) -> None:
    """The end-of-run table: per-epoch metrics, then Testing on the full split and leak-free subset."""
    lines = read_epochs(run)
    print(f"\n{'epoch':>5} {'lr':>8} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} {'img/s':>7} {'s':>6}")
    for l in lines:
        print(f"{l['epoch'] + 1:>5} {l['lr']:>8.1e} {l['train_loss']:>10.4f} {l['train_accuracy']:>9.4f} "
              f"{l['val_loss']:>9.4f} {l['val_accuracy']:>8.4f} {l['images_per_s']:>7.1f} {l['seconds']:>6.1f}")
    for name, key in (("Testing (full)", "test"), ("Testing (leak-free)", "test_leak_free")):
        r = results[key]
        recalls = ", ".join(f"{c} {v['recall']:.3f}" for c, v in r["per_class"].items())
        print(f"{name}: accuracy {r['accuracy']:.4f} on {r['samples']} images, macro F1 {r['macro_f1']:.4f}; recall: {recalls}")
    print(f"best epoch {results['best_epoch'] + 1} (val accuracy {results['val_accuracy']:.4f}); report: {run / 'report.md'}")

