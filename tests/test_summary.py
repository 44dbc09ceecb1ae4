"""The layer tables that `python -m resnet_scratch summary` and the demo print."""

import subprocess
import sys

import pytest
import torch

from resnet_scratch.__main__ import main
from resnet_scratch.models import MODELS, build
from resnet_scratch.summary import count_macs, layer_table, summarize


def test_layer_table_rows_add_up_to_the_model() -> None:
    with torch.device("meta"):
        model = build("resnet50")
    rows = layer_table(model, 224)
    assert [r.name for r in rows] == [
        "conv1",
        "maxpool",
        "conv2_x",
        "conv3_x",
        "conv4_x",
        "conv5_x",
        "avgpool",
        "dropout",
        "fc",
    ]
    assert rows[0].shape == (64, 112, 112) and rows[5].shape == (2048, 7, 7)
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())
    assert sum(r.macs for r in rows) == count_macs(model, 224)[0]


def test_summary_prints_the_papers_figures_beside_ours() -> None:
    text = summarize("resnet50")
    assert "2048 x 7 x 7" in text and "25,557,032" in text
    assert "4.09 G as built" in text and "3.86 G in the paper's v1 layout" in text
    assert "paper's FLOPs row: 3.8 G" in text


def test_inception_summary_accounts_for_the_aux_head() -> None:
    text = summarize("inception_v3")
    assert "27,161,264" in text and "AuxLogits, 3,326,696 params" in text


@pytest.mark.parametrize("name", MODELS)
def test_summary_at_other_sizes_and_class_counts(name: str) -> None:
    text = summarize(name, input_size=320, num_classes=4)
    assert f"{name} at 320x320, 4 classes" in text


def test_cli_summary_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet18", "--num-classes", "4"]) == 0
    assert "11,178,564" in capsys.readouterr().out  # 11,689,512 - 996 * 513
    assert main(["summary", "vgg16", "--size", "16"]) == 2
    assert "at least 32x32" in capsys.readouterr().err
    assert main(["summary", "resnet51"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument model: invalid choice: 'resnet51'") and len(err.splitlines()) == 1


def test_demo_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "resnet_scratch", "demo"], capture_output=True, text=True, check=True)
    for name in MODELS:
        assert f"{name} at " in done.stdout
