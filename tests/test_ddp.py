"""Data-parallel training on the CPU (gloo): two processes end where one process ends, and the command
line's torchrun path trains, with only rank 0 writing."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from resnet_scratch.config import Config
from resnet_scratch.data import Split
from resnet_scratch.data.loader import Loader
from resnet_scratch.data.transforms import eval_transform
from resnet_scratch.train import train_one_epoch

from conftest import make_folder

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, STEPS = 8, 4


def tiny_net() -> nn.Module:
    """No BatchNorm: on the CPU each process would normalise over its own shard."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)
    )


def tiny_split() -> Split:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (GLOBAL_BATCH * STEPS, 3, 20, 20), dtype=torch.uint8, generator=g)
    labels = torch.arange(len(images)) % 4
    return Split("Training", list("abcd"), images.contiguous(memory_format=torch.channels_last), labels, [], [])


def train(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """One epoch of the real loop on this rank's shard of every global batch; the final weights."""
    torch.set_num_threads(1)  # the same on both sides: reductions then round alike
    config = Config(batch_size=GLOBAL_BATCH, lr=0.1, bf16=False, channels_last=False, device="cpu", augment=False)
    model = tiny_net()
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model)
    loader = Loader(
        tiny_split(),
        GLOBAL_BATCH // world_size,
        lambda x, rows, g: eval_transform(x, 16, rows=rows),
        shuffle=True,
        seed=3,
        rank=rank,
        world_size=world_size,
        workers=0,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    train_one_epoch(model, loader, optimizer, config, torch.device("cpu"))
    inner = model.module if world_size > 1 else model
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


def rank_main(rank: int, world_size: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        weights = train(rank, world_size)
        if rank == 0:
            torch.save(weights, out)
        dist.barrier()  # neither rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_weights_of_one_process(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(rank_main, args=(2, free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    threads = torch.get_num_threads()
    try:
        single = train(0, 1)
    finally:
        torch.set_num_threads(threads)  # the rest of the suite keeps its threads
    assert ddp.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(single["4.weight"], tiny_net().state_dict()["4.weight"])  # it did train


@pytest.mark.slow
def test_torchrun_trains_and_only_rank_0_writes(tmp_path: Path) -> None:
    data = make_folder(
        tmp_path / "data", {"Training": {c: 8 for c in "abcd"}, "Testing": {c: 2 for c in "abcd"}}, size=(40, 40)
    )
    flags = [
        "--data",
        str(data),
        "--runs-dir",
        str(tmp_path),
        "--name",
        "ddp",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--external",
        "none",
        "--bf16",
        "false",
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "resnet_scratch", "train", *flags]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1]
    assert done.stdout.count("data: ") == 1 and done.stdout.count("Testing (full)") == 1  # only rank 0 speaks
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["test"]["samples"] == 8
    assert np.isfinite(lines[0]["train_loss"])
    # The same name again: rank 0 refuses the folder, and rank 1 must stop with it, not wait in DDP.
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode != 0 and "already holds a run" in again.stderr, again.stderr[-2000:]
