"""The benchmark scripts run end to end at a tiny scale, so they cannot rot between measurements."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_models_benchmark_runs() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "models.py"),
            "--models",
            "resnet50",
            "vgg16",
            "--size",
            "64",
            "--batch",
            "2",
            "--rounds",
            "1",
            "--steps",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert lines[0].split()[:2] == ["model", "precision"]
    assert len(lines) == 1 + 2 * 2
    for line in lines[1:]:
        assert float(line.split()[-1]) > 0  # the ratio


def run_script(name: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True, check=True
    )
    return [line for line in done.stdout.splitlines() if not line.startswith("#")]


@pytest.mark.slow
def test_loader_benchmark_runs(real_root: Path) -> None:
    lines = run_script("loader.py", "--limit", "256", "--epochs", "2", "--size", "64")
    assert lines[0].split()[:3] == ["epoch", "ours", "img/s"]
    assert lines[1].startswith("first") and lines[2].startswith("later, bfloat16")
    assert lines[3].startswith("later, float32") and float(lines[1].split()[-1]) > 0
    assert "augmentation alone" in lines[4] and "augmentation alone" in lines[5]


@pytest.mark.slow
def test_train_benchmark_runs(real_root: Path) -> None:
    lines = run_script("train.py", "--limit", "64", "--size", "64", "--batch", "16")
    assert lines[-1].startswith("ratio ours / tutorial: ")
    assert float(lines[-1].split()[4]) > 0


@pytest.mark.slow
def test_peer_recipe_runs(real_root: Path) -> None:
    lines = run_script("peer_torchvision.py", "--limit", "128", "--epochs", "1", "--size", "64", "--batch", "32")
    assert lines[0].split() == ["epoch", "train", "min", "wall", "min", "train", "loss", "test", "acc"]
    assert len(lines) == 2 and 0 <= float(lines[1].split()[-1]) <= 1
