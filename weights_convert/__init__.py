"""torchvision ImageNet weights <-> our modules, by explicit name tables; strict, hash-checked, no pickle.

Conversion depends on the models (their layout and their ModelInfo records), never the reverse.
"""

from .convert import ConversionError, from_torchvision, looks_like, to_torchvision
from .files import find_imagenet_file, load_pth, load_safetensors, local_imagenet_file, save_safetensors
from .tables import TABLES

__all__ = [
    "ConversionError",
    "from_torchvision",
    "to_torchvision",
    "looks_like",
    "load_pth",
    "load_safetensors",
    "save_safetensors",
    "find_imagenet_file",
    "local_imagenet_file",
    "TABLES",
]
