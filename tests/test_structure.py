"""The shape of the code: imports point one way (no cycle, the models never import the conversion,
only the CLI and the experiments import the training module), the core imports no study and its
training and inference modules name none, no module or function grows past a screenful or two, and
the command line lists every setting."""

import ast
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from resnet_scratch.config import Config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("resnet_scratch", "weights_convert")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that `path` imports, at any depth (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_imports_have_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["resnet_scratch.models.resnet"] = graph["resnet_scratch.models.resnet"] | {"resnet_scratch.train"}
    assert find_cycle(graph) is not None


def test_models_never_import_the_conversion_and_only_entry_points_import_train() -> None:
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("resnet_scratch.models"):
            assert not any(t.startswith("weights_convert") for t in targets), name
            assert all(t.startswith("resnet_scratch.models") for t in targets), (name, targets)
        if "resnet_scratch.train" in targets:
            assert name in ("resnet_scratch.__main__", "resnet_scratch.experiment"), name


@pytest.mark.parametrize(
    "first",
    [
        "weights_convert",
        "resnet_scratch",
        "resnet_scratch.train",
        "resnet_scratch.evaluate",
        "weights_convert.__main__",
        "resnet_scratch.pretrained",
    ],
)
def test_every_package_imports_first_in_a_fresh_interpreter(first: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {first}; import resnet_scratch, weights_convert"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-1500:]


def test_importing_the_report_leaves_matplotlibs_backend_alone() -> None:
    code = (
        "import matplotlib; matplotlib.use('svg'); import resnet_scratch.report, resnet_scratch.experiment, "
        "resnet_scratch.predict; print(matplotlib.get_backend())"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "svg", done.stderr[-1500:]


def test_a_verb_that_does_not_train_does_not_import_the_training_module() -> None:
    code = (
        "import sys; from resnet_scratch.__main__ import main; main(['summary', 'resnet18']); "
        "print('resnet_scratch.train' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-1500:]


def test_train_help_lists_every_setting_with_its_default_and_check() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resnet_scratch", "train", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for f in fields(Config):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert "--lr FLOAT learning rate (the peak of one-cycle) (default: 0.001; positive)" in text
    assert '(default: B; "A", "B" or "C")' in text


# The wiring that chooses a study: the command line and the experiment harness. Everything else in
# resnet_scratch is the core, which trains and scores any folder-of-classes dataset.
STUDY_WIRING = ("resnet_scratch.__main__", "resnet_scratch.experiment")
STUDY_WORDS = ("tumour", "tumor", "weak", "br35h", "sartaj")


def test_the_core_imports_nothing_from_the_studies() -> None:
    for name, targets in import_graph().items():
        if name.startswith("resnet_scratch") and not name.startswith("resnet_scratch.studies"):
            if name not in STUDY_WIRING:
                assert not any(t.startswith("resnet_scratch.studies") for t in targets), (name, targets)


@pytest.mark.parametrize("module", ["train.py", "checkpoint.py", "predictor.py", "loss.py", "run_folder.py"])
def test_the_training_and_inference_modules_name_no_study(module: str) -> None:
    text = (ROOT / "resnet_scratch" / module).read_text().lower()
    assert not [w for w in STUDY_WORDS if w in text], module


# A module a reader can hold in mind, functions that fit on a screen or two.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_no_module_or_function_of_the_package_is_too_long() -> None:
    too_long = []
    for path in sorted((ROOT / "resnet_scratch").rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}: {node.name}() {length} lines")
    assert not too_long
