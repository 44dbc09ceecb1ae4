"""Forward + backward throughput of our models against torchvision's, same weights, same batch.

    python benchmarks/models.py                      # ResNet50, VGG16, InceptionV3; fp32 and bf16
    python benchmarks/models.py --models resnet50 --batch 32 --rounds 9

Prints images/s for both and the ratio ours / torchvision (target >= 0.98: the same kernels, so any
gap is Python overhead of ours). Not a test: record the output in docs/benchmarks.md.
"""

import argparse
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet_scratch.models import MODEL_INFO, build  # noqa: E402

from timing import interleaved, machine  # noqa: E402

REFERENCE = {
    "resnet50": lambda: torchvision.models.resnet50(),
    "vgg16": lambda: torchvision.models.vgg16(),
    "inception_v3": lambda: torchvision.models.inception_v3(init_weights=True, aux_logits=True),
}


def train_step(model: torch.nn.Module, x: torch.Tensor, bf16: bool, device: torch.device):
    """A closure running forward + backward once (gradients are reset, no optimizer)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        if isinstance(out, tuple):  # InceptionV3 in training: (logits, aux_logits)
            loss = out[0].float().mean() + 0.4 * out[1].float().mean()
        else:
            loss = out.float().mean()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main() -> None:
    """Parse the flags, time every model in both precisions, print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(REFERENCE), choices=list(REFERENCE))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=None, help="input size (default: 224, 299 for Inception)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="steps per contender per round")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)

    print(f"# {machine()}")
    print(f"# batch {args.batch}, {args.rounds} rounds x {args.steps} steps, median per step")
    print(f"{'model':<14} {'precision':<9} {'ours img/s':>11} {'torchvision':>12} {'ratio':>7}")
    for name in args.models:
        torch.manual_seed(0)
        reference = REFERENCE[name]().to(device).train()
        ours = build(name).to(device).train()
        # Same tensor layout (tests/test_models.py proves it), so the weights copy in order.
        ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values())))
        size = args.size or MODEL_INFO[name].input_size
        x = torch.randn(args.batch, 3, size, size, device=device)
        for precision in args.precisions:
            bf16 = precision == "bf16"
            seconds = interleaved(
                {
                    "ours": train_step(ours, x, bf16, device),
                    "torchvision": train_step(reference, x, bf16, device),
                },
                rounds=args.rounds,
                steps=args.steps,
            )
            ours_ips = args.batch / seconds["ours"]
            ref_ips = args.batch / seconds["torchvision"]
            print(
                f"{name:<14} {precision:<9} {ours_ips:>11.2f} {ref_ips:>12.2f} {ours_ips / ref_ips:>7.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
