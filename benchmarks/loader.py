"""Training-time data throughput: our pipeline against torchvision's, on the same files, in one run.

    python benchmarks/loader.py                  # the shared dataset's Training split, 224 px, batch 64
    python benchmarks/loader.py --size 128 --epochs 3

Both sides produce the same thing per epoch: every Training image once, random resized crop +
horizontal flip + ImageNet normalisation, batches of 64. torchvision: ImageFolder + transforms +
DataLoader(num_workers=2, shuffle=True), float32. Ours: decode once (the first epoch pays for it),
then the batched transforms in the loader's threads.

Two rows after the first epoch, because the batch's number type is part of the cost:
- bf16: what training on this CPU feeds the model (bf16 autocast rounds the first convolution's
  input to bf16 anyway, so our loader rounds instead). torchvision's float32 batches are cast to
  bf16 in the loop, the same rounding autocast would do for it.
- float32: both sides' batches as float32.
Targets: first epoch >= 1x, later epochs >= 5x. Also prints the batched augmentation alone on the
device (--device cuda on a GPU machine). Not a test: record the output in docs/benchmarks.md.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as tvt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet_scratch.data import default_root, load_split  # noqa: E402
from resnet_scratch.data.loader import Loader  # noqa: E402
from resnet_scratch.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform  # noqa: E402

from timing import machine  # noqa: E402

DTYPES = (torch.bfloat16, torch.float32)


def drain(batches, dtype: torch.dtype | None = None) -> tuple[int, float]:
    """(images, seconds) to iterate every batch once, cast to dtype if it is not that already."""
    start = time.perf_counter()
    n = 0
    for x, _ in batches:
        if dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        n += x.shape[0]
    return n, time.perf_counter() - start


def main() -> None:
    """Time both pipelines epoch by epoch and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=default_root())
    p.add_argument("--split", default="Training")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4, help="epochs of each pipeline (the first is reported apart)")
    p.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--limit", type=int, default=None, help="use only the first N files (smoke runs)")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"# {machine()}")
    print(f"# {args.root / args.split}, {args.size} px, batch {args.batch}, {args.epochs} epochs each")

    tf = tvt.Compose(
        [
            tvt.RandomResizedCrop(args.size),
            tvt.RandomHorizontalFlip(),
            tvt.ToTensor(),
            tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    folder = torchvision.datasets.ImageFolder(str(args.root / args.split), tf)
    if args.limit:
        folder.samples = folder.samples[: args.limit]
    reference = torch.utils.data.DataLoader(
        folder,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )

    def transform_as(dtype: torch.dtype):
        def transform(images: torch.Tensor, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return train_transform(images, args.size, g, dtype=dtype, rows=rows)

        return transform

    # Ours, first epoch: decoding (threads) + one pass of the loader, in the training configuration.
    start = time.perf_counter()
    split = load_split(args.root, args.split)
    if args.limit:
        split.images, split.labels = split.images[: args.limit], split.labels[: args.limit]
    ours = {dtype: Loader(split, args.batch, transform_as(dtype), device=device) for dtype in DTYPES}
    n, seconds = drain(ours[torch.bfloat16])
    ours_first = n / (time.perf_counter() - start)
    theirs_first_n, theirs_first_s = drain(reference, torch.bfloat16)
    theirs_first = theirs_first_n / theirs_first_s

    rates: dict[tuple[str, torch.dtype], list[float]] = {}
    for epoch in range(1, args.epochs):  # alternate, so every pipeline sees the machine in the same state
        for dtype in DTYPES:
            ours[dtype].set_epoch(epoch)
            n, seconds = drain(ours[dtype])
            rates.setdefault(("ours", dtype), []).append(n / seconds)
            n, seconds = drain(reference, dtype)
            rates.setdefault(("torchvision", dtype), []).append(n / seconds)

    print(f"{'epoch':<22} {'ours img/s':>11} {'torchvision':>12} {'ratio':>7}")
    print(f"{'first (bf16)':<22} {ours_first:>11.0f} {theirs_first:>12.0f} {ours_first / theirs_first:>7.2f}")
    for dtype in DTYPES if rates else ():
        o, t = statistics.median(rates[("ours", dtype)]), statistics.median(rates[("torchvision", dtype)])
        name = f"later, {str(dtype).removeprefix('torch.')} (median)"
        print(f"{name:<22} {o:>11.0f} {t:>12.0f} {o / t:>7.2f}")

    # The augmentation alone, on the device, on a resident batch.
    x = split.images[: args.batch].to(device)
    g = torch.Generator().manual_seed(0)  # draws on the CPU; the pixels stay on the device
    reps = 50 if device.type == "cuda" else 10
    for dtype in DTYPES:
        for _ in range(3):
            train_transform(x, args.size, g, dtype=dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(reps):
            train_transform(x, args.size, g, dtype=dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = reps * args.batch / (time.perf_counter() - start)
        print(
            f"augmentation alone on {device.type}, one thread, {str(dtype).removeprefix('torch.')}: "
            f"{rate:,.0f} img/s (crop + flip + normalise, {args.size} px)"
        )


if __name__ == "__main__":
    main()
