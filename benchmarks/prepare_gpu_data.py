"""Copy what a GPU session needs into .gpu_data/ (ignored by git, carried by the device tool): the
dataset, and a seeded subset of the external sets small enough that the working tree stays under
the device tool's 64 MiB.

    python benchmarks/prepare_gpu_data.py        # then carry [".gpu_data"] in the device call

The subset: every Sartaj pituitary slice, a seeded share of Sartaj's glioma slices, and a seeded
share of Br35H's tumour slices from those that weak-label training never uses, nor a near copy of
(studies.brain_mri.weak_held_out), so any arm can be scored on it. It prints the sizes, and refuses if the
tree would not fit.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from resnet_scratch.data import (  # noqa: E402
    default_external_root,
    default_root,
    load_folder,  # noqa: E402
)
from resnet_scratch.data.folder import image_files  # noqa: E402
from resnet_scratch.studies.brain_mri import weak_held_out  # noqa: E402

LIMIT = 64 * 2**20  # the device tool's working-tree limit
SUBSET = {"sartaj/pituitary": None, "sartaj/glioma": 120, "br35h-tumour/tumour": 200}  # None: all


def size_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def tree_size() -> int:
    """Bytes of the files git would send: tracked, and untracked but not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return size_of([ROOT / p.decode() for p in listed if p])


def main() -> None:
    """Copy the dataset and the external subset; print what the device call will carry."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / ".gpu_data")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dataset, external = default_root(), default_external_root()
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(dataset, args.out / "brain-tumor-mri")
    rng = np.random.default_rng(args.seed)
    for folder, count in SUBSET.items():
        files, _ = image_files(external / folder)
        if folder.startswith("br35h"):
            split = load_folder(external / folder.split("/")[0], size=(128, 128))
            held = {Path(p) for p, kept in zip(split.paths, weak_held_out(split)) if kept}
            files = [f for f in files if f in held]
        chosen = files if count is None else [files[i] for i in sorted(rng.choice(len(files), count, replace=False))]
        target = args.out / "external" / folder
        target.mkdir(parents=True)
        for f in chosen:
            shutil.copy2(f, target / f.name)
        print(f"{folder}: {len(chosen)} of {len(files)} images, {size_of(chosen) / 2**20:.1f} MiB")
    carried = size_of(list(args.out.rglob("*")))
    total = carried + tree_size()
    print(f".gpu_data: {carried / 2**20:.1f} MiB; with the working tree {total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f}")
    if total > LIMIT:
        raise SystemExit("error: that is over the device tool's limit: take a smaller subset (SUBSET)")


if __name__ == "__main__":
    main()
