"""Reading and writing weight files safely: .pth without unpickling code, safetensors with metadata,
hash checks against torchvision's file names, and finding (or downloading) the ImageNet files."""

import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import torch
from torch import Tensor

from resnet_scratch.checkpoint import atomic_save_tensors, encode_metadata, load_model_file
from resnet_scratch.files import remove_stale_temporaries
from resnet_scratch.models import MODEL_INFO

from .convert import ConversionError
from .tables import TORCHVISION_URL

# torchvision names its files <name>-<first hex digits of the SHA-256>.pth; 8 or more hex digits,
# so that names like "model-a.pth" are not taken for a hash.
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def check_name_hash(path: Path, digest: str) -> None:
    """Raise if the file's name carries a SHA-256 prefix that its contents do not have."""
    match = HASH_IN_NAME.search(path.name)
    if match and not digest.startswith(match[1]):
        raise ConversionError(
            f"{path}: its name says SHA-256 {match[1]}..., its contents hash to "
            f"{digest[: len(match[1])]}...: the file is corrupt, truncated or not the one its name says"
        )


def load_pth(path: Path) -> tuple[dict[str, Tensor], str]:
    """(state dict, SHA-256) of a .pth/.pt file, checked against the hash in its name.

    Only tensors and plain containers are unpickled (weights_only=True): a file carrying code is
    refused, never run. A checkpoint that wraps its weights under "state_dict" or "model" is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    digest = sha256(path)
    check_name_hash(path, digest)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError by format
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e):
            reason = "it holds objects other than tensors, which are never unpickled here"
        raise ConversionError(f"{path}: cannot be read as a weights file: {reason}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    return obj, digest


def save_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, object]) -> None:
    """Write `tensors` with their metadata, JSON-encoded as checkpoints are, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    atomic_save_tensors(path, tensors, encode_metadata(metadata))


def load_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, object]]:
    """(tensors, decoded metadata) of a safetensors file: a training checkpoint or a converted file."""
    try:
        return load_model_file(Path(path))
    except (OSError, ValueError) as e:
        raise ConversionError(str(e)) from None


def hub_checkpoints() -> Path:
    """torch's hub cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download(url: str, dst: Path, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dst` through a temporary file, checking the SHA-256 prefix in dst's name."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0
            while piece := response.read(1 << 20):
                out.write(piece)
                done += len(piece)
                if total and done >= next_report:
                    print(f"\r{dst.name}: {done / 2**20:.0f} / {total / 2**20:.0f} MiB", end="", file=sys.stderr)
                    next_report = done + total // 20
        if total:
            print(file=sys.stderr)
        check_name_hash(dst, sha256(Path(tmp)))
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def local_imagenet_file(arch: str, *, file_name: str | None = None) -> Path | None:
    """The ImageNet weights of `arch` already on this machine ($RESNET_SCRATCH_WEIGHTS, then torch's
    hub cache), or None; never downloads."""
    if arch not in MODEL_INFO:
        raise ConversionError(f"no ImageNet weights are known for {arch!r}")
    name = file_name or MODEL_INFO[arch].torchvision_file
    places: list[Path] = []
    env = os.environ.get("RESNET_SCRATCH_WEIGHTS")
    if env:
        root = Path(env).expanduser()
        places += [root] if root.is_file() else [root / name, root / f"{arch}.safetensors"]
    places.append(hub_checkpoints() / name)
    return next((place for place in places if place.is_file()), None)


def find_imagenet_file(arch: str, *, file_name: str | None = None, base_url: str = TORCHVISION_URL) -> Path:
    """The ImageNet weights of `arch`: $RESNET_SCRATCH_WEIGHTS, then torch's hub cache, then download.

    $RESNET_SCRATCH_WEIGHTS may name a file, or a folder holding torchvision's file name or our
    converted `<arch>.safetensors`. Without a file and without a network this fails at once, with a
    message that names the file, its URL and where to put it.
    """
    local = local_imagenet_file(arch, file_name=file_name)
    if local is not None:
        return local
    name = file_name or MODEL_INFO[arch].torchvision_file
    cache = hub_checkpoints()
    url = base_url + name
    try:
        print(f"downloading {url} to {cache}", file=sys.stderr)
        return download(url, cache / name)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise ConversionError(
            f"ImageNet weights for {arch} not found in $RESNET_SCRATCH_WEIGHTS or {cache}; "
            f"downloading {url} failed ({reason}). Download {name} from {url} by hand and put it "
            f"in {cache}, or point $RESNET_SCRATCH_WEIGHTS at the file or its folder."
        ) from None
