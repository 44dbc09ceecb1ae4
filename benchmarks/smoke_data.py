"""A tiny generated dataset and external root for SMOKE=1 runs of the GPU scripts on a CPU: the
commands run end to end in minutes, on pictures that mean nothing.

    python benchmarks/smoke_data.py OUT     # writes OUT/brain-tumor-mri and OUT/external
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
LAYOUT = {
    "brain-tumor-mri/Training": {c: 12 for c in CLASSES},
    "brain-tumor-mri/Testing": {c: 3 for c in CLASSES},
    "external/sartaj": {"glioma": 4, "pituitary": 2},
    "external/br35h-tumour": {"tumour": 8},
}


def main(out: Path) -> None:
    """Smooth random pictures, 64 x 64 (the external ones 80 x 72), one folder per class."""
    rng = np.random.default_rng(0)
    for folder, classes in LAYOUT.items():
        size = (80, 72) if folder.startswith("external") else (64, 64)
        for name, count in classes.items():
            target = out / folder / name
            target.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(low).resize(size, Image.BICUBIC).save(target / f"{name}_{i:03d}.jpg", quality=95)
    print(f"wrote {out}/brain-tumor-mri and {out}/external")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
