"""torchvision ImageNet weights <-> our modules, by explicit name tables; strict, hash-checked, no pickle."""

from .convert import ConversionError, from_torchvision, looks_like, to_torchvision
from .files import find_imagenet_file, load_pth, local_imagenet_file, load_safetensors, save_safetensors
from .tables import HEADS, IMAGENET_MEAN, IMAGENET_STD, TABLES, TORCHVISION_FILES

__all__ = [
    "ConversionError", "from_torchvision", "to_torchvision", "looks_like",
    "load_pth", "load_safetensors", "save_safetensors", "find_imagenet_file", "local_imagenet_file",
    "TABLES", "HEADS", "TORCHVISION_FILES", "IMAGENET_MEAN", "IMAGENET_STD",
]
