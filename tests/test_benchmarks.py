"""The benchmark scripts run end to end at a tiny scale, so they cannot rot between measurements."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_models_benchmark_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "models.py"), "--models", "resnet50", "vgg16",
         "--size", "64", "--batch", "2", "--rounds", "1", "--steps", "1"],
        capture_output=True, text=True, check=True,
    )
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert lines[0].split()[:2] == ["model", "precision"]
    assert len(lines) == 1 + 2 * 2
    for line in lines[1:]:
        assert float(line.split()[-1]) > 0  # the ratio
