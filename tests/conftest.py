"""Shared helpers: image folders generated in a temporary directory (never the real dataset)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_scratch.data import default_root


def smooth_image(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A random but smooth picture (upsampled noise), so JPEG and resizing behave as on photos."""
    rng = np.random.default_rng(seed)
    w, h = size
    low = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return Image.fromarray(low).resize((w, h), Image.BICUBIC).convert(mode)


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    """The stderr of a command that failed as the README promises: one line starting with "error: "."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def make_folder(root: Path, layout: dict[str, dict[str, int]], size: tuple[int, int] = (64, 48)) -> Path:
    """root/<split>/<class>/<i>.jpg with distinct smooth images; layout = {split: {class: count}}."""
    seed = 0
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                smooth_image(seed, size).save(folder / f"{name}_{i:03d}.jpg", quality=95)
                seed += 1
    return root


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """Training (3 classes, 6/5/4 images) and Testing (2/2/2), 64x48 JPEGs."""
    return make_folder(
        tmp_path / "data",
        {"Training": {"b_class": 5, "a_class": 6, "c_class": 4}, "Testing": {"a_class": 2, "b_class": 2, "c_class": 2}},
    )


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The shared brain-MRI dataset (CI has it beside the checkout); skipped, with the reason, where absent."""
    root = default_root()
    if not (root / "Training").is_dir():
        pytest.skip(f"the real dataset is not at {root} (set RESNET_SCRATCH_DATA)")
    return root


def torchvision_builders() -> dict:
    """The oracle: torchvision's model of each architecture, as torchvision builds it for its
    ImageNet weights (InceptionV3 with its aux head and transform_input). Skips without torchvision."""
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models
    return {
        "resnet18": lambda: m.resnet18(),
        "resnet34": lambda: m.resnet34(),
        "resnet50": lambda: m.resnet50(),
        "resnet101": lambda: m.resnet101(),
        "resnet152": lambda: m.resnet152(),
        "vgg16": lambda: m.vgg16(),
        "vgg16_bn": lambda: m.vgg16_bn(),
        "inception_v3": lambda: m.inception_v3(init_weights=True, aux_logits=True, transform_input=True),
    }
