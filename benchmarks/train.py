"""One training epoch: our loop against the torchvision transfer-learning tutorial's, same data.

    python benchmarks/train.py                    # ResNet50, 224 px, batch 32, the whole Training split
    python benchmarks/train.py --limit 640        # the first 640 images (a shorter run)

Ours: decode once (timed apart), our ResNet50, the batched augmentation in the loader's threads,
bf16 autocast and channels_last. The tutorial's: torchvision's resnet50, ImageFolder + transforms +
DataLoader(num_workers=2), the same autocast. Same batch size, optimizer (SGD, momentum 0.9) and
precision. Prints images/s and the ratio (targets: >= 1.5x on a CPU, >= 3x on a GPU).
Not a test: record the output in docs/benchmarks.md.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch.nn import functional as F
from torchvision import transforms as tvt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet_scratch.config import Config  # noqa: E402
from resnet_scratch.data import default_root, load_split  # noqa: E402
from resnet_scratch.data.loader import Loader  # noqa: E402
from resnet_scratch.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from resnet_scratch.models import build  # noqa: E402
from resnet_scratch.runtime import bf16_supported  # noqa: E402
from resnet_scratch.train import train_one_epoch, training_transform  # noqa: E402

from timing import machine  # noqa: E402


def tutorial_epoch(model, loader, optimizer, device, bf16: bool) -> tuple[int, float]:
    """The tutorial's train phase: images to the device, forward, loss, backward, step."""
    model.train()
    start, seen = time.perf_counter(), 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = model(inputs)
        loss = F.cross_entropy(outputs.float(), labels)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen, time.perf_counter() - start


def main() -> None:
    """Time one epoch of each loop and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=default_root())
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="train on the first N Training images only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    device = torch.device(args.device)
    bf16 = bf16_supported(device)
    print(f"# {machine()}")
    print(
        f"# ResNet50, {args.size} px, batch {args.batch}, {'bf16' if bf16 else 'fp32'}, "
        f"{args.limit or 'all'} Training images, one epoch each"
    )

    torch.manual_seed(0)
    start = time.perf_counter()
    split = load_split(args.root, "Training")
    decode_s = time.perf_counter() - start
    rows = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[: args.limit].numpy()
    config = Config(
        model="resnet50", image_size=args.size, batch_size=args.batch, bf16=bf16, channels_last=True, lr=1e-3
    )
    ours = build("resnet50", num_classes=len(split.classes)).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9)
    loader = Loader(
        split,
        args.batch,
        training_transform(config, device, IMAGENET_MEAN, IMAGENET_STD),
        device=device,
        indices=rows,
        drop_last=True,
    )
    ours_stats = train_one_epoch(ours, loader, optimizer, config, device)
    ours_ips = ours_stats["images_per_s"]

    tf = tvt.Compose(
        [
            tvt.RandomResizedCrop(args.size),
            tvt.RandomHorizontalFlip(),
            tvt.ToTensor(),
            tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    folder = torchvision.datasets.ImageFolder(str(args.root / "Training"), tf)
    subset = torch.utils.data.Subset(folder, rows.tolist())
    reference_loader = torch.utils.data.DataLoader(
        subset,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    reference = torchvision.models.resnet50(num_classes=len(folder.classes)).to(device)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=1e-3, momentum=0.9)
    seen, seconds = tutorial_epoch(reference, reference_loader, reference_optimizer, device, bf16)
    reference_ips = seen / seconds

    print(f"{'loop':<28} {'img/s':>8}")
    print(f"{'ours (decoded data)':<28} {ours_ips:>8.1f}")
    first = len(rows) // args.batch * args.batch / (ours_stats["seconds"] + decode_s * len(rows) / len(split))
    print(f"{'ours (+ its share of decode)':<28} {first:>8.1f}")
    print(f"{'torchvision tutorial':<28} {reference_ips:>8.1f}")
    print(f"ratio ours / tutorial: {ours_ips / reference_ips:.2f} (with decoding: {first / reference_ips:.2f})")


if __name__ == "__main__":
    main()
