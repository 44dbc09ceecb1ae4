"""weights_convert against torchvision: same logits, same SGD step, strict errors, safe files."""

import hashlib
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from resnet_scratch import build
from resnet_scratch.models import MODEL_INFO
from resnet_scratch.pretrained import FrozenBatchNorm2d
from weights_convert import (
    TABLES,
    ConversionError,
    find_imagenet_file,
    from_torchvision,
    load_pth,
    load_safetensors,
    to_torchvision,
)
from weights_convert.__main__ import main as convert_cli

from conftest import torchvision_builders

torchvision = pytest.importorskip("torchvision")

TORCHVISION = torchvision_builders()
OUR_OPTIONS = {"inception_v3": {"transform_input": True}}


def test_every_architecture_has_a_table_and_a_reference() -> None:
    assert set(TABLES) == set(TORCHVISION)


def reference_and_ours(arch: str) -> tuple[nn.Module, nn.Module]:
    """A seeded torchvision model and ours with its weights, converted through the table."""
    torch.manual_seed(0)
    reference = TORCHVISION[arch]()
    ours = build(arch, **OUR_OPTIONS.get(arch, {}))
    ours.load_state_dict(from_torchvision(reference.state_dict(), arch))
    return reference, ours


def batch(arch: str, n: int = 4, size: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    size = size or MODEL_INFO[arch].input_size
    return torch.randn(n, 3, size, size, generator=generator)


@pytest.mark.slow
@pytest.mark.parametrize("arch", TABLES)
def test_converted_logits_equal_torchvision_in_eval(arch: str) -> None:
    reference, ours = reference_and_ours(arch)
    x = batch(arch)
    with torch.no_grad():
        expected = reference.eval()(x)
        got = ours.eval()(x)
    # Absolute, even for random-init InceptionV3 whose eval logits reach ~1e8: the same kernels in
    # the same order give the same bits.
    assert (got - expected).abs().max().item() <= 1e-5


def logits_loss(out: object, target: torch.Tensor) -> torch.Tensor:
    if isinstance(out, tuple):  # InceptionV3 in training: (logits, aux_logits), aux weighted 0.4
        return F.cross_entropy(out[0], target) + 0.4 * F.cross_entropy(out[1], target)
    return F.cross_entropy(out, target)


@pytest.mark.slow
@pytest.mark.parametrize("arch", TABLES)
def test_one_sgd_step_in_train_mode_matches_torchvision(arch: str) -> None:
    reference, ours = reference_and_ours(arch)
    x = batch(arch, size=64 if arch.startswith("vgg") else None)  # VGG's adaptive pool takes 64 px: 12x cheaper
    target = torch.tensor([0, 1, 2, 3])
    for model in (reference, ours):
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        torch.manual_seed(2)  # the same dropout masks for both
        logits_loss(model(x), target).backward()
        optimizer.step()
    after = from_torchvision(reference.state_dict(), arch)
    for key, tensor in ours.state_dict().items():
        torch.testing.assert_close(tensor, after[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("arch", TABLES)
def test_round_trip_is_the_identity(arch: str) -> None:
    with torch.device("meta"):  # keys and shapes; values are checked on a real model below
        ours = build(arch).state_dict()
    assert list(from_torchvision(to_torchvision(ours, arch), arch)) == list(ours)


def test_round_trip_keeps_values() -> None:
    ours = build("resnet18", num_classes=4).state_dict()
    back = from_torchvision(to_torchvision(ours, "resnet18"), "resnet18")
    assert all(torch.equal(back[k], v) for k, v in ours.items())


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


def test_wrong_architecture_says_what_the_weights_look_like() -> None:
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
    with pytest.raises(ConversionError, match="look like vgg16 weights") as error:
        from_torchvision(vgg, "resnet50")
    assert re.search(r"missing \(\d+\): conv1.weight, bn1.weight", str(error.value))
    assert "unexpected (32): features.0.weight" in str(error.value)


def test_extra_and_missing_keys_are_listed(resnet18_state: dict) -> None:
    extra = dict(resnet18_state, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"unexpected \(1\): layer5.0.conv1.weight"):
        from_torchvision(extra, "resnet18")
    missing = {k: v for k, v in resnet18_state.items() if k != "layer2.0.downsample.0.weight"}
    with pytest.raises(ConversionError, match=r"missing \(1\): layer2.0.downsample.0.weight"):
        from_torchvision(missing, "resnet18")
    wrong = dict(resnet18_state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    with pytest.raises(ConversionError, match=r"wrong shape \(1\): conv1.weight: \(64, 3, 3, 3\)"):
        from_torchvision(wrong, "resnet18")


def test_files_saved_before_bn_counted_batches_still_convert(resnet18_state: dict) -> None:
    old = {k: v for k, v in resnet18_state.items() if not k.endswith("num_batches_tracked")}
    ours = from_torchvision(old, "resnet18")
    assert ours["conv1.bn.num_batches_tracked"].item() == 0


def save_with_hash_name(state: dict, folder: Path, stem: str) -> Path:
    """torch.save `state`, then name the file <stem>-<first 8 hex of its SHA-256>.pth, as torchvision does."""
    tmp = folder / f"{stem}.tmp"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"{stem}-{digest[:8]}.pth"
    tmp.rename(path)
    return path


def test_truncated_file_is_a_clear_error(tmp_path: Path, resnet18_state: dict) -> None:
    whole = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ConversionError, match="cut.pth: cannot be read as a weights file"):
        load_pth(cut)


def test_hash_in_the_name_is_checked(tmp_path: Path, resnet18_state: dict) -> None:
    good = save_with_hash_name(resnet18_state, tmp_path, "resnet18")
    state, digest = load_pth(good)
    assert good.name.split("-")[1].startswith(digest[:8]) and len(state) == len(resnet18_state)
    bad = tmp_path / "resnet18-f37072fd.pth"  # torchvision's name, our contents
    bad.write_bytes(good.read_bytes())
    with pytest.raises(ConversionError, match="its name says SHA-256 f37072fd"):
        load_pth(bad)


class Payload:
    """Unpickling this would run code: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_carrying_code_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": Payload(marker)}, evil)
    with pytest.raises(ConversionError, match="objects other than tensors"):
        load_pth(evil)
    assert not marker.exists()


def test_cli_writes_safetensors_with_metadata(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    src = save_with_hash_name(reference.state_dict(), tmp_path, "resnet18")
    dst = tmp_path / "out" / "resnet18.safetensors"
    assert convert_cli(["--arch", "resnet18", "--src", str(src), "--dst", str(dst)]) == 0
    assert "resnet18, 1000 classes" in capsys.readouterr().out
    tensors, meta = load_safetensors(dst)
    assert meta["arch"] == "resnet18" and meta["num_classes"] == 1000
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["input_size"] == 224 and meta["mean"] == [0.485, 0.456, 0.406]
    assert meta["std"] == [0.229, 0.224, 0.225]
    model = build("resnet18", weights=dst).eval()
    x = batch("resnet18", 2)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    # ... and back to torchvision's format, loadable with weights_only.
    back = tmp_path / "back.pth"
    assert convert_cli(["--arch", "resnet18", "--src", str(dst), "--dst", str(back), "--to-torchvision"]) == 0
    reloaded = torchvision.models.resnet18()
    reloaded.load_state_dict(torch.load(back, weights_only=True))
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), reference(x))


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "resnet50-0676ba61.pth"
    bad.write_bytes(b"not weights")
    assert convert_cli(["--arch", "resnet50", "--src", str(bad), "--dst", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "its name says SHA-256 0676ba61" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_inception_conversion_carries_transform_input_and_aux(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = TORCHVISION["inception_v3"]()
    src = save_with_hash_name(reference.state_dict(), tmp_path, "inception_v3_google")
    dst = tmp_path / "inception_v3.safetensors"
    assert convert_cli(["--arch", "inception_v3", "--src", str(src), "--dst", str(dst)]) == 0
    _, meta = load_safetensors(dst)
    assert meta["transform_input"] is True and meta["aux_logits"] is True
    for weights in (src, dst):  # from torchvision's file and from ours
        model = build("inception_v3", weights=weights)
        assert model.transform_input and model.AuxLogits is not None
        x = batch("inception_v3", 2)
        with torch.no_grad():
            expected = reference.eval()(x)
            assert (model.eval()(x) - expected).abs().max() <= 1e-5


def test_fine_tuning_gets_a_fresh_head_on_the_converted_backbone(tmp_path: Path, resnet18_state: dict) -> None:
    src = save_with_hash_name(resnet18_state, tmp_path, "resnet18")
    model = build("resnet18", num_classes=4, weights=src)
    assert model.fc.weight.shape == (4, 512)
    ours = from_torchvision(resnet18_state, "resnet18")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, ours[key]) != key.startswith("fc."), key


def test_inception_fine_tuning_replaces_both_heads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = save_with_hash_name(TORCHVISION["inception_v3"]().state_dict(), tmp_path, "inception_v3_google")
    model = build("inception_v3", num_classes=4, weights=src)
    assert model.fc.out_features == 4 and model.AuxLogits.fc.out_features == 4
    no_aux = build("inception_v3", num_classes=4, weights=src, aux_logits=False)
    assert no_aux.AuxLogits is None


def test_weights_of_another_architecture_are_refused_by_build(tmp_path: Path, resnet18_state: dict) -> None:
    src = save_with_hash_name(resnet18_state, tmp_path, "resnet18")
    with pytest.raises(ConversionError, match="look like resnet18"):
        build("resnet34", num_classes=4, weights=src)


def test_freeze_backbone_trains_only_the_head_and_keeps_bn_statistics(tmp_path: Path, resnet18_state: dict) -> None:
    src = save_with_hash_name(resnet18_state, tmp_path, "resnet18")
    model = build("resnet18", num_classes=4, weights=src, freeze="backbone").train()
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 20 and all(isinstance(m, FrozenBatchNorm2d) and not m.training for m in bns)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(model(batch("resnet18", 4)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["fc.weight", "fc.bias"]
    # Full fine-tuning, for contrast: everything trains and BN is in training mode.
    full = build("resnet18", num_classes=4, weights=src, freeze=None).train()
    assert all(p.requires_grad for p in full.parameters()) and full.conv1.bn.training
    with pytest.raises(ValueError, match="freeze"):
        build("resnet18", freeze="everything", weights=src)


@pytest.fixture
def clean_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $RESNET_SCRATCH_WEIGHTS, and torch's hub cache in an empty temporary folder."""
    monkeypatch.delenv("RESNET_SCRATCH_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a temporary folder: (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


def test_imagenet_lookup_order(
    tmp_path: Path, clean_lookup: Path, monkeypatch: pytest.MonkeyPatch, resnet18_state: dict
) -> None:
    name = "resnet18-f37072fd.pth"
    clean_lookup.mkdir(parents=True)
    (clean_lookup / name).write_bytes(b"cached")
    assert find_imagenet_file("resnet18") == clean_lookup / name  # hub cache
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "resnet18.safetensors").write_bytes(b"converted")
    monkeypatch.setenv("RESNET_SCRATCH_WEIGHTS", str(folder))
    assert find_imagenet_file("resnet18") == folder / "resnet18.safetensors"  # the variable first
    (folder / name).write_bytes(b"torchvision's name")
    assert find_imagenet_file("resnet18") == folder / name
    monkeypatch.setenv("RESNET_SCRATCH_WEIGHTS", str(folder / "resnet18.safetensors"))
    assert find_imagenet_file("resnet18") == folder / "resnet18.safetensors"


def test_imagenet_download_checks_the_hash(
    clean_lookup: Path, local_server: tuple[str, Path], resnet18_state: dict
) -> None:
    base_url, served = local_server
    good = save_with_hash_name(resnet18_state, served, "resnet18")
    path = find_imagenet_file("resnet18", file_name=good.name, base_url=base_url)
    assert path == clean_lookup / good.name and path.read_bytes() == good.read_bytes()
    # A file whose contents do not match its name is rejected and nothing is left in the cache.
    (served / "resnet18-00000000.pth").write_bytes(good.read_bytes())
    with pytest.raises(ConversionError, match="its name says SHA-256 00000000"):
        find_imagenet_file("resnet18", file_name="resnet18-00000000.pth", base_url=base_url)
    assert sorted(p.name for p in clean_lookup.iterdir()) == [good.name]


def test_imagenet_weights_through_build(
    clean_lookup: Path, local_server: tuple[str, Path], resnet18_state: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, served = local_server
    good = save_with_hash_name(resnet18_state, served, "resnet18")
    monkeypatch.setenv("RESNET_SCRATCH_WEIGHTS", str(served / good.name))
    model = build("resnet18", num_classes=4, weights="imagenet")
    assert torch.equal(model.conv1.conv.weight, resnet18_state["conv1.weight"])


def test_no_file_and_no_network_fails_fast_and_says_what_to_do(clean_lookup: Path) -> None:
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConversionError) as error:
        find_imagenet_file("resnet50", base_url=f"http://127.0.0.1:{port}/")
    message = str(error.value)
    assert "resnet50-0676ba61.pth" in message
    assert f"http://127.0.0.1:{port}/resnet50-0676ba61.pth" in message
    assert str(clean_lookup) in message and "RESNET_SCRATCH_WEIGHTS" in message
    assert not clean_lookup.exists() or not any(clean_lookup.iterdir())


def test_a_run_checkpoint_of_inception_keeps_transform_input(tmp_path: Path) -> None:
    """A run records transform_input among its builder options: --weights RUN/best.safetensors must
    rebuild the network with it, or a model fine-tuned from ImageNet sees other pixels."""
    from resnet_scratch.checkpoint import checkpoint_metadata, save_model

    model = build("inception_v3", num_classes=4, aux_logits=False, transform_input=True)
    meta = checkpoint_metadata(
        "inception_v3",
        ["a", "b", "c", "d"],
        299,
        {"aux_logits": False, "transform_input": True},
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )
    save_model(tmp_path / "best.safetensors", model, meta)
    again = build("inception_v3", num_classes=4, aux_logits=False, weights=tmp_path / "best.safetensors")
    assert again.transform_input
