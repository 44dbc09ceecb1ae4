"""The dataset audit on a generated dataset with planted duplicates, and on the real one."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_scratch.__main__ import main
from resnet_scratch.data.audit import audit, hamming, perceptual_hashes

from conftest import make_folder, smooth_image


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    root = make_folder(
        tmp_path / "data",
        {
            "Training": {"a": 4, "b": 4},
            "Testing": {"a": 2, "b": 2},
        },
        size=(96, 96),
    )
    tr, te = root / "Training", root / "Testing"
    shutil.copy(tr / "a" / "a_000.jpg", tr / "a" / "copy_of_a0.jpg")  # exact, within Training
    shutil.copy(tr / "a" / "a_001.jpg", tr / "b" / "a1_labelled_b.jpg")  # exact, labels disagree
    shutil.copy(tr / "b" / "b_000.jpg", te / "b" / "leaked_b0.jpg")  # exact, Testing in Training
    with Image.open(tr / "a" / "a_002.jpg") as image:  # near: the same picture re-encoded
        image.save(te / "a" / "reencoded_a2.jpg", quality=40)
    grey = smooth_image(500, (96, 96), "L")
    Image.merge("RGB", [grey] * 3).save(tr / "b" / "grey_as_rgb.png")  # the same pixels as ...
    grey.save(te / "b" / "grey_as_l.png")  # ... this single-channel file: exact across modes
    (te / "a" / "broken.jpg").write_bytes((tr / "a" / "a_003.jpg").read_bytes()[:300])
    return root


def test_audit_finds_what_was_planted(planted: Path) -> None:
    report = audit(planted)
    assert report["counts"] == {"Training": {"a": 5, "b": 6}, "Testing": {"a": 3, "b": 4}}
    assert report["modes"]["Testing"] == {"RGB": 6, "L": 1}
    assert report["colour"] == {"Training": 10, "Testing": 6}  # every generated picture but the grey pair
    assert report["unreadable"] == ["Testing/a/broken.jpg"]
    assert report["exact_duplicate_groups"] == {"Training": 2, "Testing": 0}
    assert report["test_images_in_train"] == 2  # leaked_b0 and grey_as_l
    assert report["test_images_near_train"] == 1  # reencoded_a2
    assert report["near_duplicate_pairs_cross_split"] == 1
    conflicts = [c for c in report["label_conflicts"] if c["kind"] == "exact"]
    assert len(conflicts) == 1
    assert set(conflicts[0]["paths"]) == {"Training/a/a_001.jpg", "Training/b/a1_labelled_b.jpg"}
    assert sorted(report["leak_free_test"]) == [
        "Testing/a/a_000.jpg",
        "Testing/a/a_001.jpg",
        "Testing/b/b_000.jpg",
        "Testing/b/b_001.jpg",
    ]


def test_audit_cli_writes_json_and_clean_list(planted: Path, tmp_path: Path, capsys) -> None:
    out, clean = tmp_path / "out" / "audit.json", tmp_path / "out" / "clean.txt"
    assert main(["audit", str(planted), "--json", str(out), "--write-clean-list", str(clean)]) == 0
    text = capsys.readouterr().out
    assert "2 of 7 Testing images are pixel-identical to a Training image" in text
    report = json.loads(out.read_text())
    for key in (
        "counts",
        "test_images_in_train",
        "exact_duplicate_groups",
        "near_duplicate_pairs_cross_split",
        "label_conflicts",
        "unreadable",
    ):
        assert key in report
    assert clean.read_text().splitlines() == sorted(report["leak_free_test"])


def test_perceptual_hash_is_stable_under_reencoding_and_apart_for_other_images() -> None:
    import torch

    images = [np.asarray(smooth_image(s, (96, 96))) for s in range(20)]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    h = perceptual_hashes(batch)
    d = hamming(h, h)
    assert (np.diag(d) == 0).all() and d[~np.eye(20, dtype=bool)].min() > 8
    dimmer = (batch.float() * 0.8).to(torch.uint8)  # contrast change of the same picture
    assert hamming(perceptual_hashes(dimmer), h).diagonal().max() <= 4


def test_audit_of_the_real_dataset(real_root: Path) -> None:
    report = audit(real_root)
    assert report["counts"]["Training"] == {"glioma": 1321, "meningioma": 1339, "notumor": 1591, "pituitary": 1457}
    assert report["unreadable"] == []
    # Known flaws of this dataset (see docs/data.md): Testing images that are also Training images.
    assert report["test_images_in_train"] > 100
    assert report["leak_free_test_count"] < 1311
