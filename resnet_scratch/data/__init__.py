"""Data: folder scan -> decode-once store -> loader (shuffle, shard, prefetch) -> batched transforms."""

from .cache import Split, load_folder, load_split
from .folder import (
    EXTENSIONS,
    SPLITS,
    DatasetError,
    Skipped,
    dataset_root,
    decode,
    default_external_root,
    default_root,
    scan_split,
    to_rgb,
)

__all__ = [
    "Split",
    "load_split",
    "load_folder",
    "EXTENSIONS",
    "SPLITS",
    "DatasetError",
    "Skipped",
    "decode",
    "dataset_root",
    "default_root",
    "default_external_root",
    "scan_split",
    "to_rgb",
]
