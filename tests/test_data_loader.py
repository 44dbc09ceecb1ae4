"""The loader: every sample once per epoch, disjoint and complete shards, determinism, prefetch."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_scratch.data.cache import Split
from resnet_scratch.data.loader import Loader, epoch_batches
from resnet_scratch.data.run import train_val_split
from resnet_scratch.data.transforms import gather


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 300),
    batch_size=st.integers(1, 40),
    world_size=st.integers(1, 8),
    epoch=st.integers(0, 3),
    drop_last=st.booleans(),
)
def test_shards_are_disjoint_complete_and_equally_long(
    n: int, batch_size: int, world_size: int, epoch: int, drop_last: bool
) -> None:
    if n < world_size:
        with pytest.raises(ValueError, match="cannot be shared"):
            epoch_batches(n, batch_size, epoch=epoch, seed=0, world_size=world_size)
        return
    per_rank = [
        epoch_batches(n, batch_size, epoch=epoch, seed=3, drop_last=drop_last, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    counts = {len(batches) for batches in per_rank}
    assert len(counts) == 1  # every rank steps the same number of times
    seen = np.concatenate([np.concatenate(b) for b in per_rank if b] or [np.array([], dtype=int)])
    assert len(seen) == len(set(seen.tolist()))  # disjoint, and no sample twice
    if drop_last:
        assert all(len(b) == batch_size for batches in per_rank for b in batches)
        assert len(seen) == (n // (batch_size * world_size)) * batch_size * world_size
    else:
        assert sorted(seen.tolist()) == list(range(n))  # complete
        assert all(len(b) >= min(2, batch_size, n // world_size) for batches in per_rank for b in batches)
    # A single process with the global batch size sees the same batches, step by step; only where
    # the ranks merged a remainder too small for two samples each, and the single process (one
    # sample left over) did not, do the final steps differ.
    single = epoch_batches(n, batch_size * world_size, epoch=epoch, seed=3, drop_last=drop_last)
    tail, step = n % (batch_size * world_size), batch_size * world_size
    differs = not drop_last and n > step and 0 < tail < 2 * world_size and tail != 1
    compare = single[:-2] if differs else single
    assert differs or len(single) == len(per_rank[0])
    for step, batch in enumerate(compare):
        union = np.concatenate([per_rank[r][step] for r in range(world_size)])
        assert sorted(union.tolist()) == sorted(batch.tolist())


def test_a_last_batch_of_one_image_joins_the_one_before() -> None:
    # 17 rows in batches of 8 used to end on a batch of 1: ResNet-18 at 32 px (1 x 1 maps in conv5_x)
    # cannot train BatchNorm on it, and a seeded training fraction can land on such a count.
    assert [len(b) for b in epoch_batches(17, 8, epoch=0, seed=0)] == [8, 9]
    assert [len(b) for b in epoch_batches(18, 8, epoch=0, seed=0)] == [8, 8, 2]


def test_order_is_seeded_by_seed_and_epoch() -> None:
    a = epoch_batches(100, 10, epoch=0, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, epoch_batches(100, 10, epoch=0, seed=1)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(epoch_batches(100, 10, epoch=1, seed=1)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(epoch_batches(100, 10, epoch=0, seed=2)))
    assert np.array_equal(np.concatenate(epoch_batches(10, 3, epoch=0, seed=0, shuffle=False)), np.arange(10))


def indexed_split(n: int) -> Split:
    """Images whose pixels carry their own index, so a batch can be checked against its labels."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).repeat(1, 3, 4, 4)
    return Split("Training", ["a", "b"], images, torch.arange(n) % 2, [f"{i}.jpg" for i in range(n)], [])


def identity(images: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return images[rows].float()


@pytest.mark.parametrize("workers", [2, 0])
def test_loader_batches_carry_their_own_labels(workers: int) -> None:
    split = indexed_split(50)
    loader = Loader(split, 8, identity, seed=4, workers=workers)
    seen = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        ids = []
        for x, y in loader:
            index = x[:, 0, 0, 0].long()
            assert torch.equal(y, index % 2)
            ids += index.tolist()
        assert sorted(ids) == list(range(50))
        seen.append(ids)
    assert seen[0] != seen[1] and len(loader) == 7


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_loader_with_prefetch_threads_equals_without(workers: int) -> None:
    split = indexed_split(40)

    def noisy(images: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images[rows].float()
        return x + torch.rand(x.shape, generator=generator)

    with_prefetch = [x for x, _ in Loader(split, 6, noisy, seed=1, workers=workers)]
    without = [x for x, _ in Loader(split, 6, noisy, seed=1, workers=0)]
    assert len(with_prefetch) == len(without) == 7
    assert all(torch.equal(a, b) for a, b in zip(with_prefetch, without))


def test_loader_subset_indices_and_early_exit() -> None:
    split = indexed_split(30)
    loader = Loader(split, 4, identity, indices=np.arange(10, 20), shuffle=False)
    first = next(iter(loader))[0][:, 0, 0, 0].long().tolist()
    assert first == [10, 11, 12, 13]  # and leaving the loop early does not hang the producer


@pytest.mark.parametrize("channels_last", [True, False])
def test_gather_is_indexing_in_the_stores_layout(channels_last: bool) -> None:
    images = torch.randint(0, 256, (9, 3, 5, 4), dtype=torch.uint8)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    idx = torch.tensor([7, 0, 7, 3])
    out = gather(images, idx)
    assert torch.equal(out, images[idx])
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_transform_errors_reach_the_caller() -> None:
    def broken(images: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise RuntimeError("augmentation failed")

    with pytest.raises(RuntimeError, match="augmentation failed"):
        list(Loader(indexed_split(10), 4, broken))


def test_validation_split_is_stratified_seeded_and_keeps_duplicates_together() -> None:
    labels = torch.tensor([0] * 100 + [1] * 50 + [2] * 30)
    groups = [f"img{i}" for i in range(180)]
    groups[1] = groups[2] = groups[3] = "dup-a"  # three identical class-0 images
    groups[120] = groups[121] = "dup-b"
    train, val = train_val_split(labels, groups, fraction=0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 180
    per_class = np.bincount(labels[val].numpy(), minlength=3)
    assert abs(per_class[0] - 20) <= 2 and abs(per_class[1] - 10) <= 1 and per_class[2] == 6
    for members in ([1, 2, 3], [120, 121]):
        assert len({bool(np.isin(m, val)) for m in members}) == 1
    again = train_val_split(labels, groups, fraction=0.2, seed=0)[1]
    other = train_val_split(labels, groups, fraction=0.2, seed=1)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)
