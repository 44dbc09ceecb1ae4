"""The tutorial's exercises stay true: the learner's blocks (learn/blocks.py) compute what ours do,
and every reference answer (learn/solutions.py) does what the tutorial says it does.

A learner checks their own answers the same way: LEARN_ANSWERS=mine.py pytest tests/test_exercises.py
runs these tests on the names mine.py defines (a test skips a name it does not define yet)."""

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # learn/ sits beside the package

from learn import blocks, solutions  # noqa: E402
from resnet_scratch.models import build  # noqa: E402
from resnet_scratch.models.resnet import BasicBlock, Bottleneck  # noqa: E402
from resnet_scratch.sanity import generated_batch, identity_blocks, initial_loss  # noqa: E402

SHAPES = [(64, 64, 1), (64, 128, 2)]  # an identity shortcut, then a projection


def answers():
    """The learner's file named by LEARN_ANSWERS, loaded as a module; None without it."""
    path = os.environ.get("LEARN_ANSWERS")
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("learner_answers", Path(path).resolve())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def answer(name: str):
    """`name` from the learner's file, or (without LEARN_ANSWERS) from learn/blocks.py or learn/solutions.py."""
    mine = answers()
    if mine is None:
        return getattr(solutions, name, None) or getattr(blocks, name)
    if not hasattr(mine, name):
        pytest.skip(f"{os.environ['LEARN_ANSWERS']} does not define {name} yet")
    return getattr(mine, name)


@pytest.mark.parametrize("in_channels, out_channels, stride", SHAPES)
@pytest.mark.parametrize("train", [False, True])
def test_our_basic_block_loads_into_the_learners_and_agrees(in_channels, out_channels, stride, train) -> None:
    torch.manual_seed(0)
    ours, yours = BasicBlock(in_channels, out_channels, stride), answer("BasicBlock")(in_channels, out_channels, stride)
    for bn in (m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # not the defaults 1 and 0
        torch.nn.init.uniform_(bn.weight)
        torch.nn.init.uniform_(bn.bias)
    answer("copy_weights")(ours, yours)
    ours.train(train), yours.train(train)
    x = torch.randn(4, in_channels, 16, 16)
    torch.testing.assert_close(yours(x), ours(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("in_channels, width, stride", [(256, 64, 1), (64, 64, 1), (256, 128, 2)])
def test_our_bottleneck_loads_into_the_learners_and_agrees(in_channels, width, stride) -> None:
    torch.manual_seed(0)
    ours = Bottleneck(in_channels, width, stride).eval()
    yours = answer("Bottleneck")(in_channels, width, stride).eval()
    answer("copy_weights")(ours, yours)
    x = torch.randn(2, in_channels, 16, 16)
    torch.testing.assert_close(yours(x), ours(x), rtol=0, atol=1e-6)


def test_a_misnamed_layer_is_an_error_not_a_silent_skip() -> None:
    yours = answer("BasicBlock")(64, 64)
    yours.bn_2 = yours.bn2
    del yours.bn2
    with pytest.raises(RuntimeError, match="bn2"):
        answer("copy_weights")(BasicBlock(64, 64), yours)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
@pytest.mark.parametrize("skip", [True, False])
def test_the_depth_count_gives_the_name(depth: int, skip: bool) -> None:
    assert answer("depth")(build(f"resnet{depth}", skip=skip)) == depth


@pytest.mark.parametrize("in_channels, out_channels, stride", SHAPES)
def test_the_pre_activation_block_keeps_its_identity_path_clean(in_channels, out_channels, stride) -> None:
    torch.manual_seed(0)
    block = answer("PreActBlock")(in_channels, out_channels, stride).eval()
    x = torch.randn(2, in_channels, 16, 16)  # negative values too: nothing clips them
    assert block(x).shape == (2, out_channels, 16 // stride, 16 // stride)
    torch.nn.init.zeros_(block.conv2.weight)  # F(x) = 0
    if stride == 1 and in_channels == out_channels:
        assert torch.equal(block(x), x)  # the input, exactly, negative values included
        original = BasicBlock(in_channels, out_channels).eval()
        torch.nn.init.zeros_(original.bn2.weight)
        assert torch.equal(original(x), x.relu())  # the original block's ReLU after the sum clips them


def test_zero_init_residual_starts_every_block_as_the_identity() -> None:
    x, y = generated_batch()
    torch.manual_seed(0)
    theirs = build("resnet18", num_classes=4)
    answer("zero_init_residual")(theirs)
    torch.manual_seed(0)
    ours = build("resnet18", num_classes=4, zero_init_residual=True)
    assert all(torch.equal(a, b) for a, b in zip(theirs.state_dict().values(), ours.state_dict().values()))
    loss = initial_loss(theirs, x, y)  # train mode, as check 1 of the tutorial's section 5
    assert abs(loss - math.log(4)) < 0.05, loss  # a model that knows nothing
    inputs, outputs = {}, {}

    def keep(name: str):
        def hook(_block, args, out) -> None:
            inputs[name], outputs[name] = args[0].clone(), out.clone()

        return hook

    for name, block in identity_blocks(theirs):
        block.register_forward_hook(keep(name))
    with torch.no_grad():
        theirs.eval()(x)
    assert len(inputs) == 5  # ResNet-18: every block but the first of conv3_x, conv4_x and conv5_x
    for name in inputs:
        assert torch.equal(outputs[name], inputs[name]), name  # relu(0 + x) = x for the x a ReLU handed on


def test_zero_init_residual_is_refused_for_a_plain_network() -> None:
    with pytest.raises(ValueError, match="needs skip=True"):
        build("resnet18", skip=False, zero_init_residual=True)


@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_residual_matches_torchvision(depth: int) -> None:
    torchvision = pytest.importorskip("torchvision")
    tv = getattr(torchvision.models, f"resnet{depth}")(zero_init_residual=True)
    ours = build(f"resnet{depth}", zero_init_residual=True)
    last = "bn3.weight" if depth == 50 else "bn2.weight"
    zero_tv = [n for n, p in tv.named_parameters() if n.endswith(".weight") and not p.any()]
    zero_ours = [n for n, p in ours.named_parameters() if n.endswith(".weight") and not p.any()]
    blocks_count = sum(len(getattr(ours, s)) for s in ("conv2_x", "conv3_x", "conv4_x", "conv5_x"))
    assert len(zero_tv) == len(zero_ours) == blocks_count and all(n.endswith(last) for n in zero_tv + zero_ours)
