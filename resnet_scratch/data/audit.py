"""Dataset audit: counts, sizes, modes and colour images, unreadable files, exact and near duplicates, leakage
from Testing into Training, and duplicates whose labels disagree.

Exact duplicates have identical decoded pixels (so a greyscale JPEG and its RGB copy with the same
grey values count as one image). Near duplicates are compared by a 64-bit perceptual hash (pHash:
the signs of the 8x8 lowest-frequency DCT coefficients of a 32x32 grey thumbnail, against their
median); two images are near duplicates when their hashes differ in at most HAMMING_THRESHOLD bits
and their pixels are not identical.
"""

import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from .cache import Split, load_folder, load_split, pixel_digest
from .folder import SPLITS, decode, scan_split

# Out of 64 bits (distances between balanced hashes are even). Chosen by looking at Testing/Training
# pairs of this dataset: at 0, 2 and 4 bits the pairs seen were the same slice (re-encoded, rescaled
# or re-windowed); at 6 and 8 bits a mix of the same slice and neighbouring or merely similar slices.
HAMMING_THRESHOLD = 4

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix, n x n."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.float()


def perceptual_hashes(images: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """64-bit pHash of each uint8 N x 3 x H x W image, as an N-vector of uint64."""
    dct = _dct_matrix(32)
    out = np.empty(len(images), dtype=np.uint64)
    weights = torch.tensor([1 << b for b in range(63, -1, -1)], dtype=torch.float64)
    for start in range(0, len(images), chunk):
        grey = images[start : start + chunk].float().mean(1, keepdim=True)
        thumb = F.interpolate(grey, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        coeffs = (dct @ thumb[:, 0] @ dct.T)[:, :8, :8].reshape(-1, 64)
        median = coeffs[:, 1:].median(dim=1, keepdim=True).values  # the DC term would skew it
        bits = (coeffs > median).double()
        # 64 bits do not fit a float64 exactly: build the two 32-bit halves separately.
        hi = (bits[:, :32] @ weights[:32].div(2**32)).long().numpy().astype(np.uint64)
        lo = (bits[:, 32:] @ weights[32:]).long().numpy().astype(np.uint64)
        out[start : start + chunk] = (hi << np.uint64(32)) | lo
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two vectors of uint64 hashes: len(a) x len(b)."""
    x = np.bitwise_xor(a[:, None], b[None, :])
    return _POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.int32)


def near_pairs(a: np.ndarray, b: np.ndarray | None, threshold: int, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """(i, j, distance) with distance <= threshold; within `a` (i < j) when b is None."""
    pairs = []
    other = a if b is None else b
    for start in range(0, len(a), chunk):
        d = hamming(a[start : start + chunk], other)
        i, j = np.nonzero(d <= threshold)
        i = i + start
        keep = i < j if b is None else np.ones(len(i), dtype=bool)
        pairs += [(int(p), int(q), int(d[p - start, q])) for p, q in zip(i[keep], j[keep])]
    return pairs


def hashes_of(split: Split, hashes: dict) -> tuple[list[str], np.ndarray]:
    """(pixel hashes, pHashes) of `split`, taken from `hashes` ({"exact": {split name: ...}, "phash":
    {split name: ...}}) where it has them, else computed and added to it."""
    exact, phash = hashes.setdefault("exact", {}), hashes.setdefault("phash", {})
    if split.name not in exact:
        exact[split.name] = split.pixel_hashes()
    if split.name not in phash:
        phash[split.name] = perceptual_hashes(split.images)
    return exact[split.name], phash[split.name]


def split_leakage(
    train: Split, test: Split, threshold: int = HAMMING_THRESHOLD, hashes: dict | None = None
) -> tuple[dict[str, list[int]], list[int], list[tuple[int, int, int]]]:
    """How Testing overlaps Training: (train pixel hash -> rows, test rows pixel-identical to a
    train image, near pairs (test row, train row, bits) whose pixels differ).

    hashes: whatever the caller already has, {"exact": {split: pixel hashes}, "phash": {split:
    pHashes}}; the rest is computed (and added to it).
    """
    hashes = {} if hashes is None else hashes
    (train_exact, train_phash), (test_exact, test_phash) = hashes_of(train, hashes), hashes_of(test, hashes)
    rows: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(train_exact):
        rows[h].append(i)
    leaked = [t for t, h in enumerate(test_exact) if h in rows]
    near = [p for p in near_pairs(test_phash, train_phash, threshold) if test_exact[p[0]] != train_exact[p[1]]]
    return rows, leaked, near


def leak_free_indices(
    train: Split, test: Split, threshold: int = HAMMING_THRESHOLD, hashes: dict | None = None
) -> list[int]:
    """Rows of `test` with no pixel-identical and no near duplicate in `train` (hashes: as split_leakage)."""
    _, leaked, near = split_leakage(train, test, threshold, hashes)
    tainted = set(leaked) | {t for t, _, _ in near}
    return [t for t in range(len(test)) if t not in tainted]


def duplicate_groups(split: Split, threshold: int = HAMMING_THRESHOLD, hashes: dict | None = None) -> list[int]:
    """A group number per image of `split`: images with identical pixels or pHashes within `threshold`
    bits share one, transitively (union-find), so a split along groups keeps near duplicates together.

    hashes: as split_leakage's; what is missing is computed and added.
    """
    exact, phash = hashes_of(split, {} if hashes is None else hashes)
    parent = list(range(len(split)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    pairs = [(i, first.setdefault(h, i)) for i, h in enumerate(exact)]
    pairs += [(i, j) for i, j, _ in near_pairs(phash, None, threshold)]
    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(split))]


def audit_against(
    root: Path, others: list[Path], threshold: int = HAMMING_THRESHOLD, cache_dir: Path | None = None
) -> dict:
    """Overlap between the collection at root (Training and Testing) and other folders of class
    folders: images of each other folder whose decoded pixels equal one of root's, or that are within
    `threshold` pHash bits of one (at any size: the hash is taken of a 32 x 32 thumbnail), and the
    clean rest, named relative to the other folder's parent (the form evaluate --clean-list reads)."""
    root = Path(root)
    classes = scan_split(root, SPLITS[0]).classes
    mine = [load_split(root, name, classes=classes, cache_dir=cache_dir) for name in SPLITS]
    my_exact = set(native_digests([p for s in mine for p in s.paths]))
    my_phash = np.concatenate([perceptual_hashes(s.images) for s in mine])
    report: dict = {"root": str(root), "hamming_threshold": threshold, "against": {}}
    for other in others:
        other = Path(other)
        split = load_folder(other, cache_dir=cache_dir)
        exact = [i for i, h in enumerate(native_digests(split.paths)) if h in my_exact]
        near = {i for i, _, _ in near_pairs(perceptual_hashes(split.images), my_phash, threshold)} - set(exact)
        tainted = set(exact) | near
        report["against"][str(other)] = {
            "images": len(split),
            "counts": split.counts(),
            "identical": len(exact),
            "near": len(near),
            "overlapping": sorted(str(Path(split.paths[i]).relative_to(other.parent)) for i in tainted),
            "clean": [str(Path(p).relative_to(other.parent)) for i, p in enumerate(split.paths) if i not in tainted],
        }
    return report


def native_digests(paths: list[str]) -> list[str]:
    """pixel_digest of each file's decoded pixels at its own size (before a store resizes any of them),
    decoded in threads."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor() as pool:
        return list(pool.map(lambda p: pixel_digest(decode(Path(p))), paths))


def format_against(report: dict) -> str:
    """audit_against's report as a few lines."""
    lines = [f"overlap with {report['root']} (Training + Testing; pHash <= {report['hamming_threshold']} bits):"]
    for other, r in report["against"].items():
        lines.append(
            f"  {other}: {r['images']} images {r['counts']}; {r['identical']} identical to one there, "
            f"{r['near']} more near duplicates; {len(r['clean'])} clean"
        )
    return "\n".join(lines)


def _modes_and_sizes(paths: list[str]) -> tuple[Counter, Counter]:
    modes, sizes = Counter(), Counter()
    for p in paths:
        with Image.open(p) as image:
            modes[image.mode] += 1
            sizes[f"{image.size[0]}x{image.size[1]}"] += 1
    return modes, sizes


def colour_images(images: torch.Tensor, chunk: int = 512) -> int:
    """How many decoded N x 3 x H x W images have channels that differ somewhere: the rest are grey."""
    count = 0
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        count += int(((part[:, 0] != part[:, 1]) | (part[:, 1] != part[:, 2])).flatten(1).any(1).sum())
    return count


def _within_split(
    name: str, s: Split, exact: list[str], phash: np.ndarray, rel: list[str], threshold: int, report: dict
) -> list[dict]:
    """Count one split's exact duplicate groups and near-duplicate pairs into report; its label conflicts."""
    conflicts = []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(exact):
        groups[h].append(i)
    dup_groups = [g for g in groups.values() if len(g) > 1]
    report["exact_duplicate_groups"][name] = len(dup_groups)
    report["exact_duplicate_extra_images"][name] = sum(len(g) - 1 for g in dup_groups)
    for g in dup_groups:
        labels = {s.classes[int(s.labels[i])] for i in g}
        if len(labels) > 1:
            conflicts.append(
                {
                    "kind": "exact",
                    "split": name,
                    "paths": [rel[i] for i in g],
                    "labels": [s.classes[int(s.labels[i])] for i in g],
                }
            )
    within = [p for p in near_pairs(phash, None, threshold) if exact[p[0]] != exact[p[1]]]
    report["near_duplicate_pairs"][name] = len(within)
    for i, j, d in within:
        if s.labels[i] != s.labels[j]:
            conflicts.append(
                {
                    "kind": "near",
                    "split": name,
                    "distance": d,
                    "paths": [rel[i], rel[j]],
                    "labels": [s.classes[int(s.labels[i])], s.classes[int(s.labels[j])]],
                }
            )
    return conflicts


def audit(root: Path, threshold: int = HAMMING_THRESHOLD, cache_dir: Path | None = None) -> dict:
    """The audit of root/Training and root/Testing as a JSON-ready dict (see module docstring)."""
    root = Path(root)
    classes = scan_split(root, SPLITS[0]).classes
    splits: dict[str, Split] = {name: load_split(root, name, classes=classes, cache_dir=cache_dir) for name in SPLITS}
    rel = {name: [str(Path(p).relative_to(root)) for p in s.paths] for name, s in splits.items()}
    exact = {name: s.pixel_hashes() for name, s in splits.items()}
    phash = {name: perceptual_hashes(s.images) for name, s in splits.items()}

    report: dict = {
        "root": str(root),
        "classes": classes,
        "hamming_threshold": threshold,
        "counts": {name: s.counts() for name, s in splits.items()},
        "modes": {},
        "sizes": {},
        "colour": {name: colour_images(s.images) for name, s in splits.items()},
        "unreadable": [
            str(Path(k.path).relative_to(root))
            for s in splits.values()
            for k in s.skipped
            if k.reason.startswith("cannot")
        ],
        "skipped": [
            {"path": str(Path(k.path).relative_to(root)), "reason": k.reason}
            for s in splits.values()
            for k in s.skipped
        ],
        "exact_duplicate_groups": {},
        "exact_duplicate_extra_images": {},
        "near_duplicate_pairs": {},
    }
    for name, s in splits.items():
        modes, sizes = _modes_and_sizes(s.paths)
        report["modes"][name], report["sizes"][name] = dict(modes), dict(sizes)

    # Exact and near duplicates within each split, and their label conflicts.
    conflicts = []
    for name, split in splits.items():
        conflicts += _within_split(name, split, exact[name], phash[name], rel[name], threshold, report)

    # Leakage: Testing images that are (nearly) Training images.
    train, test = splits["Training"], splits["Testing"]
    train_exact, leaked_exact, cross = split_leakage(train, test, threshold, {"exact": exact, "phash": phash})
    report["test_images_in_train"] = len(leaked_exact)
    report["near_duplicate_pairs_cross_split"] = len(cross)
    near_test = {t for t, _, _ in cross}
    report["test_images_near_train"] = len(near_test - set(leaked_exact))
    for t in leaked_exact:
        labels = {classes[int(train.labels[i])] for i in train_exact[exact["Testing"][t]]}
        if labels != {classes[int(test.labels[t])]}:
            conflicts.append(
                {
                    "kind": "exact",
                    "split": "Testing/Training",
                    "paths": [rel["Testing"][t]] + [rel["Training"][i] for i in train_exact[exact["Testing"][t]]],
                    "labels": [classes[int(test.labels[t])]] + sorted(labels),
                }
            )
    for t, i, d in cross:
        if test.labels[t] != train.labels[i]:
            conflicts.append(
                {
                    "kind": "near",
                    "split": "Testing/Training",
                    "distance": d,
                    "paths": [rel["Testing"][t], rel["Training"][i]],
                    "labels": [classes[int(test.labels[t])], classes[int(train.labels[i])]],
                }
            )
    report["label_conflicts"] = conflicts
    tainted = set(leaked_exact) | near_test
    report["leak_free_test"] = [rel["Testing"][t] for t in range(len(test)) if t not in tainted]
    report["leak_free_test_count"] = len(report["leak_free_test"])
    report["leak_free_test_counts"] = dict(
        Counter(classes[int(test.labels[t])] for t in range(len(test)) if t not in tainted)
    )
    return report


def format_report(report: dict) -> str:
    """The audit as a few human-readable lines."""
    classes = report["classes"]
    lines = [f"dataset {report['root']}", f"  {'split':<10}" + "".join(f"{c:>12}" for c in classes) + f"{'total':>8}"]
    for split, counts in report["counts"].items():
        lines.append(f"  {split:<10}" + "".join(f"{counts[c]:>12}" for c in classes) + f"{sum(counts.values()):>8}")
    for split in report["counts"]:
        lines.append(
            f"  {split}: modes {report['modes'][split]}, sizes {report['sizes'][split]}, "
            f"colour {report['colour'][split]} (the rest grey)"
        )
    lines.append(
        f"  unreadable files: {len(report['unreadable'])}" + "".join(f"\n    {p}" for p in report["unreadable"])
    )
    for split in report["counts"]:
        lines.append(
            f"  {split}: {report['exact_duplicate_groups'][split]} groups of identical images "
            f"({report['exact_duplicate_extra_images'][split]} redundant copies), "
            f"{report['near_duplicate_pairs'][split]} near-duplicate pairs "
            f"(pHash <= {report['hamming_threshold']} bits)"
        )
    test_total = sum(report["counts"]["Testing"].values())
    lines.append(
        f"  leakage: {report['test_images_in_train']} of {test_total} Testing images are pixel-identical to a "
        f"Training image; {report['test_images_near_train']} more are near duplicates "
        f"({report['near_duplicate_pairs_cross_split']} near pairs across the splits)"
    )
    lines.append(f"  label conflicts: {len(report['label_conflicts'])}")
    for c in report["label_conflicts"][:10]:
        lines.append(f"    {c['kind']}: " + ", ".join(f"{p} ({label})" for p, label in zip(c["paths"], c["labels"])))
    lines.append(
        f"  leak-free Testing subset: {report['leak_free_test_count']} images {report['leak_free_test_counts']}"
    )
    return "\n".join(lines)
