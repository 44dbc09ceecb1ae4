"""The CUDA path: GPU-resident data and augmentation, a bf16 channels-last run and its resume,
evaluate and predict, converted weights, SyncBatchNorm under nccl, torch.compile.

Marked `cuda`: skipped (with the reason) where no CUDA device is present; `pytest -m cuda` runs only
these (benchmarks/gpu_session.sh does, first). RESNET_SCRATCH_TEST_DEVICE=cpu runs them on the CPU
instead, to check the tests themselves without a GPU (the nccl test stays skipped).
"""

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_scratch import train as train_module
from resnet_scratch.__main__ import main
from resnet_scratch.checkpoint import load_model_file
from resnet_scratch.config import load_config
from resnet_scratch.data import load_split
from resnet_scratch.data.loader import Loader
from resnet_scratch.data.transforms import eval_transform, train_transform
from resnet_scratch.models import build
from resnet_scratch.train import fit

from conftest import make_folder, torchvision_builders

DEVICE = os.environ.get("RESNET_SCRATCH_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device here"),
]
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cuda") / "data"
    return make_folder(root, {"Training": {c: 16 for c in CLASSES}, "Testing": {c: 4 for c in CLASSES}}, size=(48, 48))


def flags(data: Path, runs: Path, name: str, **extra: str) -> dict[str, str]:
    return {
        "data": str(data),
        "runs_dir": str(runs),
        "name": name,
        "image_size": "32",
        "epochs": "2",
        "batch_size": "8",
        "lr": "0.01",
        "external": "none",
        "device": DEVICE,
        "bf16": "true",
        "channels_last": "true",
    } | extra


def test_the_gpu_loader_gives_the_cpu_loaders_batches(data: Path) -> None:
    split = load_split(data, "Training")
    size = 32

    def eval_batches(device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = Loader(
            split.to(device), 8, lambda x, rows, g: eval_transform(x, size, rows=rows), device=device, seed=1, workers=0
        )
        return [(x.float().cpu(), y.cpu()) for x, y in loader]

    cpu, gpu = eval_batches("cpu"), eval_batches(DEVICE)
    assert len(cpu) == len(gpu)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    for (a, la), (b, lb) in zip(cpu, gpu):
        assert torch.equal(la, lb)  # the same rows in the same order
        # the same pixels within about 1/255: the CPU resamples in fixed-point uint8, rounding twice
        assert ((a - b) * std).abs().max() <= 1.5 / 255

    def augmented(device: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        images = split.images.to(device)
        return torch.cat(
            [
                train_transform(images, size, g, rows=torch.arange(len(split), device=device)).float().cpu()
                for _ in range(4)
            ]
        )

    a, b = augmented("cpu"), augmented(DEVICE)  # the same boxes and flips; another resampler
    assert abs(a.mean() - b.mean()) < 0.05 and abs(a.std() - b.std()) < 0.05


def test_a_bf16_channels_last_run_and_its_resume(data: Path, tmp_path: Path, monkeypatch) -> None:
    whole = fit(load_config(None, flags(data, tmp_path, "whole")))
    real = train_module.save_training_state

    def killed(folder, model, optimizer, scheduler, epoch, extra):
        if epoch == 2:
            raise KeyboardInterrupt
        real(folder, model, optimizer, scheduler, epoch, extra)

    monkeypatch.setattr(train_module, "save_training_state", killed)
    config = load_config(None, flags(data, tmp_path, "resumed"))
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    monkeypatch.setattr(train_module, "save_training_state", real)
    resumed = fit(config, resume=True)
    for run in (whole, resumed):
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == [1, 2] and all(np.isfinite(e["train_loss"]) for e in epochs)
        config_json = json.loads((run / "config.json").read_text())
        assert config_json["environment"]["device"].startswith(DEVICE)
    assert json.loads((resumed / "metrics.json").read_text())["test"]["samples"] == 16


def test_evaluate_and_predict_on_the_device(data: Path, tmp_path: Path, capsys) -> None:
    run = fit(load_config(None, flags(data, tmp_path, "run", epochs="1")))
    checkpoint = str(run / "best.safetensors")
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                checkpoint,
                "--data",
                str(data),
                "--device",
                DEVICE,
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["samples"] == 16
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                checkpoint,
                "--json",
                "--device",
                DEVICE,
                str(data / "Testing"),
                "--explain",
                str(tmp_path / "why.png"),
            ]
        )
        == 0
    )
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(results) == 16 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in results)


@pytest.mark.parametrize("arch", ["resnet50", "vgg16_bn", "inception_v3"])
def test_converted_torchvision_models_give_torchvisions_logits(arch: str, monkeypatch) -> None:
    from weights_convert import from_torchvision

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # compare fp32 with fp32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    reference = torchvision_builders()[arch]().eval().to(DEVICE)
    ours = build(arch, **({"transform_input": True} if arch == "inception_v3" else {}))
    ours.load_state_dict(from_torchvision({k: v.cpu() for k, v in reference.state_dict().items()}, arch))
    ours = ours.eval().to(DEVICE)
    size = 299 if arch == "inception_v3" else 224
    x = torch.randn(2, 3, size, size, device=DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(DEVICE != "cuda", reason="nccl needs CUDA")
def test_sync_batchnorm_under_a_one_process_nccl_group() -> None:
    """fit's conversion and DDP wrapping run under nccl (with one process torch's SyncBatchNorm
    normalises as BatchNorm does: this checks the plumbing, not the statistics across processes)."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build("resnet18", num_classes=4)).cuda()
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0])
        loss = ddp(torch.randn(4, 3, 64, 64, device="cuda")).square().mean()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
    finally:
        dist.destroy_process_group()


def test_compile_true_trains(data: Path, tmp_path: Path) -> None:
    run = fit(load_config(None, flags(data, tmp_path, "compiled", epochs="1", compile="true")))
    weights, meta = load_model_file(run / "last.safetensors")
    assert meta["arch"] == "resnet18" and not any(k.startswith("_orig_mod") for k in weights)
