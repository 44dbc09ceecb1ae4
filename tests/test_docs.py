"""The pages a student reads: the README is a front door (short, install and a first run at the top),
the first run's command parses, and every relative link on every page leads to a file that exists."""

import re
import shlex
from pathlib import Path

import pytest

from resnet_scratch.__main__ import parser
from resnet_scratch.config import flags_given, load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "experiments" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    top = "\n".join(lines[:40])
    assert "## Install" in top and "pip install" in top and "resnet-scratch train" in top
    text = "\n".join(lines)
    assert "make train" in text and "make test" in text


def test_the_first_run_of_the_readme_is_a_valid_command() -> None:
    text = (ROOT / "README.md").read_text()
    command = next(line for line in text.splitlines() if line.startswith("resnet-scratch train"))
    args = parser().parse_args(shlex.split(command)[1:])
    config = load_config(None, flags_given(args))  # every setting checked, as train checks them
    assert config.epochs == 1 and config.image_size == 32 and config.external is None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    missing = [
        target
        for target in LINK.findall(text)
        if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists()
    ]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


def test_the_committed_results_pages_are_what_their_command_writes() -> None:
    import importlib.util
    import json

    from resnet_scratch.experiment_pages import experiment_readme

    spec = importlib.util.spec_from_file_location("make_results_page", ROOT / "experiments" / "make_results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = ROOT / "docs" / "results"
    assert module.build_page(results, ROOT / "docs" / "results.md") == (ROOT / "docs" / "results.md").read_text()
    for record in sorted(results.glob("*/results.json")):
        readme = (record.parent / "README.md").read_text()
        assert readme == experiment_readme(json.loads(record.read_text())), f"{record.parent.name}: regenerate it"
