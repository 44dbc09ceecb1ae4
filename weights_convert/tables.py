"""Explicit name tables: our module paths (named after the papers) -> torchvision's.

A table maps a prefix of our state-dict keys to torchvision's prefix. Within a matched prefix the rest
of the key is kept, except for the block-internal renames in `Table.inner`. Nothing depends on the
order in which modules were registered: every key is renamed by what it is called.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    """Prefix renames (ours -> torchvision) and renames of single name segments inside them."""

    prefixes: dict[str, str]
    inner: dict[str, str] = field(default_factory=dict)


RESNET = Table(
    prefixes={
        "conv1.conv": "conv1",
        "conv1.bn": "bn1",
        "conv2_x": "layer1",
        "conv3_x": "layer2",
        "conv4_x": "layer3",
        "conv5_x": "layer4",
        "fc": "fc",
    },
    # Inside a block: conv1/bn1, conv2/bn2, (conv3/bn3) keep their names; the projection shortcut
    # is torchvision's "downsample".
    inner={"shortcut": "downsample"},
)

# torchvision keeps VGG's layers in flat Sequentials (features.<i>, classifier.<i>); the indices
# count the ReLUs, max pools and (in vgg16_bn) BatchNorms between the convolutions.
VGG16 = Table(
    prefixes={
        "block1.conv1_1": "features.0",
        "block1.conv1_2": "features.2",
        "block2.conv2_1": "features.5",
        "block2.conv2_2": "features.7",
        "block3.conv3_1": "features.10",
        "block3.conv3_2": "features.12",
        "block3.conv3_3": "features.14",
        "block4.conv4_1": "features.17",
        "block4.conv4_2": "features.19",
        "block4.conv4_3": "features.21",
        "block5.conv5_1": "features.24",
        "block5.conv5_2": "features.26",
        "block5.conv5_3": "features.28",
        "classifier.fc6": "classifier.0",
        "classifier.fc7": "classifier.3",
        "classifier.fc8": "classifier.6",
    }
)

VGG16_BN = Table(
    prefixes={
        "block1.conv1_1": "features.0",
        "block1.bn1_1": "features.1",
        "block1.conv1_2": "features.3",
        "block1.bn1_2": "features.4",
        "block2.conv2_1": "features.7",
        "block2.bn2_1": "features.8",
        "block2.conv2_2": "features.10",
        "block2.bn2_2": "features.11",
        "block3.conv3_1": "features.14",
        "block3.bn3_1": "features.15",
        "block3.conv3_2": "features.17",
        "block3.bn3_2": "features.18",
        "block3.conv3_3": "features.20",
        "block3.bn3_3": "features.21",
        "block4.conv4_1": "features.24",
        "block4.bn4_1": "features.25",
        "block4.conv4_2": "features.27",
        "block4.bn4_2": "features.28",
        "block4.conv4_3": "features.30",
        "block4.bn4_3": "features.31",
        "block5.conv5_1": "features.34",
        "block5.bn5_1": "features.35",
        "block5.conv5_2": "features.37",
        "block5.bn5_2": "features.38",
        "block5.conv5_3": "features.40",
        "block5.bn5_3": "features.41",
        "classifier.fc6": "classifier.0",
        "classifier.fc7": "classifier.3",
        "classifier.fc8": "classifier.6",
    }
)

# Our InceptionV3 uses the TF-slim names of the released graph, as torchvision does: the table is
# the identity, listed so that a key outside these modules is still caught.
INCEPTION_V3 = Table(
    prefixes={
        name: name
        for name in (
            "Conv2d_1a_3x3",
            "Conv2d_2a_3x3",
            "Conv2d_2b_3x3",
            "Conv2d_3b_1x1",
            "Conv2d_4a_3x3",
            "Mixed_5b",
            "Mixed_5c",
            "Mixed_5d",
            "Mixed_6a",
            "Mixed_6b",
            "Mixed_6c",
            "Mixed_6d",
            "Mixed_6e",
            "AuxLogits",
            "Mixed_7a",
            "Mixed_7b",
            "Mixed_7c",
            "fc",
        )
    }
)

TABLES: dict[str, Table] = {
    "resnet18": RESNET,
    "resnet34": RESNET,
    "resnet50": RESNET,
    "resnet101": RESNET,
    "resnet152": RESNET,
    "vgg16": VGG16,
    "vgg16_bn": VGG16_BN,
    "inception_v3": INCEPTION_V3,
}

# Where torchvision's files are published; each model's file name is in its ModelInfo.
TORCHVISION_URL = "https://download.pytorch.org/models/"
