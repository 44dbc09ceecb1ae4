"""What keeping near duplicates together changed in the validation split: for each seed, how many
validation images have an exact or near copy (pHash within the audit's threshold) among the
training rows, when the split keeps only identical images together (before) and when it keeps
groups of near duplicates together (now, data/run.py).

    python experiments/validation_split.py      # writes docs/results/data/validation_split.json
"""

import argparse
import json
from pathlib import Path

from resnet_scratch.data import default_root, load_split
from resnet_scratch.data.audit import HAMMING_THRESHOLD, duplicate_groups, hashes_of, near_pairs
from resnet_scratch.data.run import train_val_split
from resnet_scratch.files import atomic_write_text


def copies_in_training(train_rows, val_rows, exact: list[str], phash, threshold: int) -> int:
    """Validation images with an identical or near copy among the training rows."""
    exact_train = {exact[t] for t in train_rows.tolist()}
    tainted = {v for v in val_rows.tolist() if exact[v] in exact_train}
    tainted |= {int(val_rows[i]) for i, _, _ in near_pairs(phash[val_rows], phash[train_rows], threshold)}
    return len(tainted)


def main() -> None:
    """Both splits for seeds 0, 1, 2; print and write the counts."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_root())
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--out", type=Path, default=Path("docs/results/data/validation_split.json"))
    args = p.parse_args()
    train = load_split(args.data, "Training")
    hashes: dict = {}
    exact, phash = hashes_of(train, hashes)
    groups = duplicate_groups(train, HAMMING_THRESHOLD, hashes)
    rows = []
    for seed in range(3):
        row = {"seed": seed}
        for name, grouping in (("identical kept together", exact), ("near duplicates kept together", groups)):
            train_rows, val_rows = train_val_split(train.labels, grouping, args.fraction, seed)
            row[name] = {
                "train": len(train_rows),
                "val": len(val_rows),
                "val_with_a_copy_in_train": copies_in_training(train_rows, val_rows, exact, phash, HAMMING_THRESHOLD),
            }
        rows.append(row)
        print(json.dumps(row))
    record = {
        "command": "python experiments/validation_split.py",
        "threshold_bits": HAMMING_THRESHOLD,
        "fraction": args.fraction,
        "groups": len(set(groups)),
        "images": len(train),
        "seeds": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(record, indent=1))
    print(f"{len(set(groups))} groups among {len(train)} Training images; wrote {args.out}")


if __name__ == "__main__":
    main()
