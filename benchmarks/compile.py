"""ResNet50 training throughput (forward + backward + SGD step, bf16, channels_last) with and
without torch.compile, in images/s. Issue 5's GPU anchor: about 3,000 img/s at 224 px on an H100.

    python benchmarks/compile.py                         # 224 px, batch 128 on CUDA (32 on a CPU)
    python benchmarks/compile.py --size 64 --batch 8     # a quick CPU check of the script itself

Not a test: record the output in docs/benchmarks.md.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet_scratch.models import build  # noqa: E402

from timing import interleaved, machine  # noqa: E402


def training_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """A closure running one SGD step on a fixed batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main() -> None:
    """Time eager and compiled ResNet50 in turns; print images/s and the compile time."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 32 on a CPU")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="steps per contender per round")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 32)
    torch.backends.cudnn.benchmark = True
    print(f"# {machine()}")
    print(f"# {args.model}, {args.size} px, batch {batch}, bf16 autocast, channels_last, SGD step")
    x = torch.randn(batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,), device=device)
    eager = build(args.model, num_classes=4).to(device).to(memory_format=torch.channels_last)
    compiled_model = build(args.model, num_classes=4).to(device).to(memory_format=torch.channels_last)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model)
    steps = {"eager": training_step(eager, x, y, device), "compiled": training_step(compiled, x, y, device)}
    alone = interleaved({"eager": steps["eager"]}, rounds=args.rounds, steps=args.steps)["eager"]
    print(
        f"eager alone, before compiling: {batch / alone:,.0f} img/s", flush=True
    )  # kept if compiling runs out of time
    start = time.perf_counter()
    steps["compiled"]()  # the first call compiles forward and backward
    steps["compiled"]()
    print(f"compile (first two steps): {time.perf_counter() - start:.1f} s")
    seconds = interleaved(steps, rounds=args.rounds, steps=args.steps)
    for name, s in seconds.items():
        print(f"{name:<9} {batch / s:>9,.0f} img/s")
    print(f"compiled / eager: {seconds['eager'] / seconds['compiled']:.2f}")


if __name__ == "__main__":
    main()
