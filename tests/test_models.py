"""The three families against the papers' tables and against torchvision, the oracle."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from resnet_scratch.models import MODEL_INFO, MODELS, build
from resnet_scratch.models.inception import MIN_SIZE_AUX
from resnet_scratch.summary import count_macs

from conftest import torchvision_builders

torchvision = pytest.importorskip("torchvision")

# Parameter counts at 1000 classes, as torchvision publishes them.
PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "inception_v3": 27_161_264,
}

TORCHVISION = torchvision_builders()

MIN_SIZES = {name: info.min_size for name, info in MODEL_INFO.items()}
INPUT_SIZES = {name: info.input_size for name, info in MODEL_INFO.items()}
PAPER_GMACS = {int(name[6:]): info.paper_gmacs for name, info in MODEL_INFO.items() if info.paper_gmacs}

RESNETS = [n for n in MODELS if n.startswith("resnet")]

# The paper's Table 1 at 224x224: row -> (H = W, channels with BasicBlock, with Bottleneck).
TABLE_1 = {
    "conv1": (112, 64, 64),
    "conv2_x": (56, 64, 256),
    "conv3_x": (28, 128, 512),
    "conv4_x": (14, 256, 1024),
    "conv5_x": (7, 512, 2048),
}


def meta(name: str, **options: object) -> nn.Module:
    """Model `name` on the meta device: shapes and counts without memory or compute."""
    with torch.device("meta"):
        return build(name, **options).eval()


def test_model_zoo_is_complete() -> None:
    assert set(MODELS) == set(PARAMS) == set(TORCHVISION)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_equals_torchvision(name: str) -> None:
    ours = sum(p.numel() for p in meta(name).parameters())
    with torch.device("meta"):
        reference = sum(p.numel() for p in TORCHVISION[name]().parameters())
    assert ours == PARAMS[name] == reference


@pytest.mark.parametrize("name", MODELS)
def test_tensor_layout_and_macs_equal_torchvision(name: str) -> None:
    """Same tensors in the same order, and the same multiply-adds, layer for layer."""
    ours = meta(name)
    with torch.device("meta"):
        reference = TORCHVISION[name]().eval()
    ours_shapes = [tuple(t.shape) for t in ours.state_dict().values()]
    ref_shapes = [tuple(t.shape) for t in reference.state_dict().values()]
    assert ours_shapes == ref_shapes
    size = INPUT_SIZES[name]
    assert count_macs(ours, size)[0] == count_macs(reference, size)[0]


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("stride_on", ["3x3", "1x1"])
def test_resnet_stage_shapes_follow_table_1(name: str, stride_on: str) -> None:
    model = meta(name, stride_on=stride_on)
    rows = model.forward_stages(torch.empty(2, 3, 224, 224, device="meta"))
    assert list(rows) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "avgpool", "fc"]
    bottleneck = int(name[len("resnet") :]) >= 50
    for row, (hw, basic_c, bottleneck_c) in TABLE_1.items():
        channels = bottleneck_c if bottleneck else basic_c
        assert tuple(rows[row].shape) == (2, channels, hw, hw), row
        assert MODEL_INFO[name].paper_rows[row] == (channels, hw, hw)  # the record states the same table
    assert tuple(rows["avgpool"].shape) == (2, 2048 if bottleneck else 512, 1, 1)
    assert tuple(rows["fc"].shape) == (2, 1000)


def test_stage_shapes_on_real_tensors() -> None:
    """The meta device computes shapes by the same rules; check one real forward anyway."""
    model = build("resnet50", num_classes=4).eval()
    with torch.no_grad():
        rows = model.forward_stages(torch.randn(1, 3, 224, 224))
    assert [tuple(t.shape) for t in rows.values()] == [
        (1, 64, 112, 112),
        (1, 256, 56, 56),
        (1, 512, 28, 28),
        (1, 1024, 14, 14),
        (1, 2048, 7, 7),
        (1, 2048, 1, 1),
        (1, 4),
    ]


@pytest.mark.parametrize("depth", sorted(PAPER_GMACS))
def test_v1_multiply_adds_match_the_paper(depth: int) -> None:
    macs, _ = count_macs(meta(f"resnet{depth}", stride_on="1x1"), 224)
    assert macs / 1e9 == pytest.approx(PAPER_GMACS[depth], rel=0.03)


def test_v15_resnet50_multiply_adds_match_torchvision_figure() -> None:
    macs, _ = count_macs(meta("resnet50"), 224)
    assert macs / 1e9 == pytest.approx(4.09, rel=0.03)
    v1, _ = count_macs(meta("resnet50", stride_on="1x1"), 224)
    assert v1 < macs  # the stride on the first 1x1 halves the 3x3's input


def test_v1_and_v15_differ_only_in_where_the_stride_sits() -> None:
    v15 = build("resnet50", stride_on="3x3")
    v1 = build("resnet50", stride_on="1x1")
    assert v15.conv3_x[0].conv1.stride == (1, 1) and v15.conv3_x[0].conv2.stride == (2, 2)
    assert v1.conv3_x[0].conv1.stride == (2, 2) and v1.conv3_x[0].conv2.stride == (1, 1)
    assert [t.shape for t in v1.state_dict().values()] == [t.shape for t in v15.state_dict().values()]


def silence_residual_branches(model: nn.Module) -> None:
    """Zero the last BN of every block, so each residual branch F(x) outputs exactly 0."""
    for stage in (model.conv2_x, model.conv3_x, model.conv4_x, model.conv5_x):
        for block in stage:
            last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
            nn.init.zeros_(last_bn.weight)
            nn.init.zeros_(last_bn.bias)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_skip_false_removes_every_shortcut(name: str) -> None:
    """With F(x) = 0 in every block, a plain net outputs fc's bias whatever the input, while a
    residual net still carries its input through the shortcuts."""
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    plain = build(name, num_classes=5, skip=False).eval()
    residual = build(name, num_classes=5, skip=True).eval()
    silence_residual_branches(plain)
    silence_residual_branches(residual)
    with torch.no_grad():
        assert torch.equal(plain(x1), plain(x2))
        torch.testing.assert_close(plain(x1), plain.fc.bias.expand(2, 5))
        assert not torch.allclose(residual(x1), residual(x2))
        # An identity block (no projection) now passes its (non-negative) input through unchanged.
        h = residual.conv2_x[0](residual.maxpool(residual.conv1(x1)))
        assert torch.equal(residual.conv2_x[1](h), h)
    assert not any("shortcut" in key for key in plain.state_dict())


@pytest.mark.parametrize(
    "name, options",
    [
        ("resnet18", {"dropout": 0.5}),
        ("vgg16", {"dropout": 0.5}),
        ("inception_v3", {"dropout": 0.5, "aux_logits": False}),
    ],
)
def test_dropout_is_active_in_train_and_inactive_in_eval(name: str, options: dict) -> None:
    torch.manual_seed(0)
    size = max(MIN_SIZES[name], 64)
    model = build(name, num_classes=3, **options)
    without = build(name, num_classes=3, **{**options, "dropout": 0.0})
    without.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        model.train()
        without.train()
        assert not torch.allclose(model(x), model(x))
        torch.testing.assert_close(without(x), without(x))
        model.eval()
        without.eval()
        torch.testing.assert_close(model(x), without(x))


def test_inception_returns_aux_logits_in_training_only() -> None:
    torch.manual_seed(0)
    model = build("inception_v3", num_classes=4)
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        out = model.train()(x)
        assert out.logits.shape == out.aux_logits.shape == (2, 4)
        assert isinstance(model.eval()(x), torch.Tensor)
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_inception_transform_input_matches_torchvision() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(init_weights=True, aux_logits=False, transform_input=True).eval()
    ours = build("inception_v3", aux_logits=False, transform_input=True).eval()
    # Same tensor layout (tested above), so the weights can be copied in order.
    ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values())))
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=0)


# Per family: how many random shapes to try (InceptionV3 trains only at >= 299 px, so fewer).
EXAMPLES = {name: 4 for name in MODELS} | {"vgg16": 3, "vgg16_bn": 2, "inception_v3": 2}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_random_shapes_train_finite_and_reach_every_parameter(name: str) -> None:
    min_size = MIN_SIZE_AUX if name == "inception_v3" else MIN_SIZES[name]

    @settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True)
    @given(
        batch=st.integers(2, 3),  # BN in training needs two values per channel at 1x1
        size=st.integers(min_size, min_size + 40),
        width=st.integers(min_size, min_size + 40),
        num_classes=st.integers(2, 7),
    )
    def check(batch: int, size: int, width: int, num_classes: int) -> None:
        torch.manual_seed(0)
        model = build(name, num_classes=num_classes).train()
        out = model(torch.randn(batch, 3, size, width))
        logits = out.logits if name == "inception_v3" else out
        assert logits.shape == (batch, num_classes)
        assert torch.isfinite(logits).all()
        loss = logits.square().mean()
        if name == "inception_v3":
            assert out.aux_logits.shape == (batch, num_classes)
            loss = loss + out.aux_logits.square().mean()
        loss.backward()
        for key, p in model.named_parameters():
            assert p.grad is not None, key
            assert torch.isfinite(p.grad).all(), key
            assert p.grad.abs().sum() > 0, key

    check()


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=3, deadline=None, derandomize=True)
@given(batch=st.integers(1, 3), extra=st.integers(0, 64), num_classes=st.integers(1, 10))
def test_random_shapes_eval_give_finite_logits(name: str, batch: int, extra: int, num_classes: int) -> None:
    size = MIN_SIZES[name] + extra
    model = meta(name, num_classes=num_classes)
    assert tuple(model(torch.empty(batch, 3, size, size, device="meta")).shape) == (batch, num_classes)
    torch.manual_seed(0)
    with torch.no_grad():
        real = build(name, num_classes=num_classes).eval()(torch.randn(batch, 3, size, size))
    assert real.shape == (batch, num_classes) and torch.isfinite(real).all()


@pytest.mark.parametrize("name", MODELS)
def test_wrong_channel_count_is_a_clear_value_error(name: str) -> None:
    model = meta(name)
    size = INPUT_SIZES[name]
    with pytest.raises(ValueError, match="expects 3 input channels"):
        model(torch.empty(1, 1, size, size, device="meta"))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model(torch.empty(3, size, size, device="meta"))


@pytest.mark.parametrize("name", MODELS)
def test_too_small_input_is_a_clear_value_error(name: str) -> None:
    model = meta(name)
    small = MIN_SIZES[name] - 1
    with pytest.raises(ValueError, match=f"at least {MIN_SIZES[name]}x{MIN_SIZES[name]}"):
        model(torch.empty(1, 3, small, 224, device="meta"))


def test_inception_with_aux_head_needs_299_in_training() -> None:
    model = meta("inception_v3").train()
    with pytest.raises(ValueError, match="at least 299x299"):
        model(torch.empty(2, 3, 298, 298, device="meta"))


def test_build_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet51'.*resnet50"):
        build("resnet51")
    with pytest.raises(ValueError, match="does not take option.*aux_logits.*takes: num_classes"):
        build("resnet50", aux_logits=False)
    with pytest.raises(ValueError, match="stride_on"):
        build("resnet50", stride_on="2x2")
    with pytest.raises(ValueError, match="dropout"):
        build("vgg16", dropout=1.0)
    assert build("resnet18", num_classes=4).fc.out_features == 4


def test_forward_keeps_no_stage_alive_and_stages_are_opt_in() -> None:
    """forward is a straight line: no dict of every stage's output is built unless asked for."""
    model = build("resnet18", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        rows = model.forward_stages(x)
        torch.testing.assert_close(rows["fc"], model(x))
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def projection_params(in_c: int, out_c: int) -> int:
    """A 1x1 convolution without bias, then BatchNorm's weight and bias."""
    return in_c * out_c + 2 * out_c


def shortcut_count(depth: int, option: str) -> int:
    """Shortcut parameters by the paper's Section 3.3: A has none; B projects where the shape changes
    (the first block of each stage, and conv2_x's first block in a bottleneck net, 64 -> 256 channels);
    C projects on every block."""
    block, counts = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3])}[depth]
    e = 4 if block == "bottleneck" else 1
    total, in_c = 0, 64
    for stage, (width, n) in enumerate(zip((64, 128, 256, 512), counts)):
        for i in range(n):
            out_c = width * e
            changes = in_c != out_c or (i == 0 and stage > 0)
            if option == "C" or (option == "B" and changes):
                total += projection_params(in_c, out_c)
            in_c = out_c
    return total


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize("option", ["A", "B", "C"])
def test_shortcut_options_have_the_papers_parameter_counts(depth: int, option: str) -> None:
    model = meta(f"resnet{depth}", shortcut=option)
    plain = meta(f"resnet{depth}", skip=False)
    shortcuts = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert shortcuts == shortcut_count(depth, option)
    if option == "B":
        assert sum(p.numel() for p in model.parameters()) == PARAMS[f"resnet{depth}"]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_option_a_pads_new_channels_with_zeros_and_keeps_every_stride_th_pixel(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, shortcut="A").eval()
    block = model.conv3_x[0]
    x = torch.randn(2, block.conv1.in_channels, 16, 16)
    out = block.shortcut(x)
    assert out.shape == (2, block.bn3.num_features if hasattr(block, "bn3") else block.bn2.num_features, 8, 8)
    torch.testing.assert_close(out[:, : x.shape[1]], x[:, :, ::2, ::2])
    assert out[:, x.shape[1] :].abs().sum() == 0
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_bad_shortcut_option_is_refused() -> None:
    with pytest.raises(ValueError, match="shortcut must be"):
        build("resnet18", shortcut="D")
