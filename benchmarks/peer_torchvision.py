"""The peer recipe: a plain torchvision pipeline for the same task, to compare time-to-accuracy with.

    python benchmarks/peer_torchvision.py                 # ResNet-18, 128 px, 18 epochs
    python benchmarks/peer_torchvision.py --epochs 22

torchvision's resnet18 from scratch, ImageFolder + transforms (RandomResizedCrop(128), flip) +
DataLoader(num_workers=2), bf16 autocast, SGD (momentum 0.9, nesterov, weight decay 5e-4) with
OneCycleLR, label smoothing 0.1. After every epoch it prints the elapsed training time and the
accuracy on the full Testing split (evaluation time is not counted in "train min"), so the
time-to-accuracy can be read off. No validation split, no model selection: it reports every epoch.
Not a test: record the output next to ours (docs/results/).
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
from resnet_scratch.data import default_root  # noqa: E402
from resnet_scratch.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from resnet_scratch.runtime import bf16_supported  # noqa: E402

from timing import machine  # noqa: E402


def main() -> None:
    """Train the peer recipe and print test accuracy after every epoch."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=default_root())
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="first N images of each split (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = bf16_supported(device)
    print(f"# {machine()}")
    print(
        f"# torchvision resnet18, {args.size} px, batch {args.batch}, {args.epochs} epochs, one-cycle lr {args.lr}, "
        f"{'bf16' if bf16 else 'fp32'}",
        flush=True,
    )

    normalize = tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = tvt.Compose([tvt.RandomResizedCrop(args.size), tvt.RandomHorizontalFlip(), tvt.ToTensor(), normalize])
    test_tf = tvt.Compose(
        [tvt.Resize(round(args.size * 256 / 224)), tvt.CenterCrop(args.size), tvt.ToTensor(), normalize]
    )
    train_set = torchvision.datasets.ImageFolder(str(args.root / "Training"), train_tf)
    test_set = torchvision.datasets.ImageFolder(str(args.root / "Testing"), test_tf)
    if args.limit:
        train_set = torch.utils.data.Subset(train_set, torch.randperm(len(train_set))[: args.limit].tolist())
        test_set = torch.utils.data.Subset(test_set, list(range(min(args.limit, len(test_set)))))
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True
    )
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=128, num_workers=args.workers)

    model = torchvision.models.resnet18(num_classes=4).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=len(train_loader)
    )
    trained_s = 0.0
    start = time.perf_counter()
    print(f"{'epoch':>5} {'train min':>9} {'wall min':>8} {'train loss':>10} {'test acc':>8}", flush=True)
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(y)
            seen += len(y)
        trained_s += time.perf_counter() - t0
        model.eval()
        correct, count = 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
                count += len(y)
        print(
            f"{epoch + 1:>5} {trained_s / 60:>9.2f} {(time.perf_counter() - start) / 60:>8.2f} "
            f"{total / seen:>10.4f} {correct / count:>8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
