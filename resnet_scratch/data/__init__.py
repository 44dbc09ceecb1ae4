"""Data: folder scan -> decode-once store -> loader (shuffle, shard, prefetch) -> batched transforms."""

from .cache import Split, load_split
from .folder import EXTENSIONS, SPLITS, DatasetError, Skipped, decode, default_root, scan_split, to_rgb

__all__ = [
    "Split", "load_split", "EXTENSIONS", "SPLITS", "DatasetError", "Skipped", "decode",
    "default_root", "scan_split", "to_rgb",
]
