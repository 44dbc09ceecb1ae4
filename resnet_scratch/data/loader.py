"""Batches from a decoded split: shuffle per epoch, shard across ranks, prefetch in threads.

No torch DataLoader: the images are already decoded in one tensor, so a batch is its rows of that
tensor given to the batched transform (which reads its crops in place, or gathers them first), and a
couple of background threads keep the next batches ready. Threads, not processes: the transforms
spend their time in torch kernels, which release the GIL.
"""

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from .cache import Split
from .transforms import gather, to_device

# transform(images, rows, generator) -> float batch of images[rows]. images is the whole decoded
# store (uint8, on the device), so a transform that can read its crops in place need not gather.
Transform = Callable[[Tensor, Tensor, torch.Generator], Tensor]


def epoch_batches(
    n: int,
    batch_size: int,
    *,
    epoch: int,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> list[np.ndarray]:
    """This rank's batches of sample indices for one epoch.

    The epoch's order (a permutation seeded by seed and epoch, the same on every rank) is cut into
    global batches of batch_size * world_size; rank r takes every world_size-th sample of each, so
    the ranks' shards are disjoint, cover the epoch, and have the same number of batches, and a
    single process with the global batch size sees exactly the same batches. Without drop_last,
    a last global batch too small to give every rank two samples is merged into the one before it
    (there, and only there, the last step can differ from a single process's): a batch of one image
    would train BatchNorm on its own statistics, or fail where a map is 1 x 1 (ResNet's conv5_x at 32 px).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if n < world_size:
        raise ValueError(f"{n} samples cannot be shared across {world_size} ranks")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    step = batch_size * world_size
    starts = list(range(0, n, step))
    if drop_last and n % step:
        starts.pop()
    elif not drop_last and len(starts) > 1 and 0 < n % step < 2 * world_size:
        starts.pop()  # the remainder joins the previous global batch
    ends = starts[1:] + [n if not drop_last else starts[-1] + step] if starts else []
    return [order[a:b][rank::world_size] for a, b in zip(starts, ends)]


class Loader:
    """Iterates (images, labels) batches of a Split on `device`, transformed, one epoch per pass.

    workers: threads making the next batches while the consumer works (0: each batch is made when
    asked for, in the consumer's thread). The batches are the same whatever the number.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        transform: Transform,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 2,
        indices: np.ndarray | None = None,
        keep_on_device: bool = True,
    ) -> None:
        self.images = split.images
        self.labels = split.labels
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)
        self.batch_size = batch_size
        self.transform = transform
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        if workers < 0:
            raise ValueError(f"workers must be 0 (no prefetch) or more, got {workers}")
        self.workers = workers
        self.epoch = 0
        self.pin = self.device.type == "cuda" and not keep_on_device
        if self.device.type == "cuda" and keep_on_device:
            # The whole decoded split (about 1 GB) lives on the GPU: only each batch's row numbers (and its
            # crop boxes) cross the bus, never its pixels.
            self.images = self.images.to(self.device)
            self.labels = self.labels.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle (and augmentation seed) the next pass uses."""
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        """This rank's batches of indices into the split for the current epoch."""
        return [
            self.indices[b]
            for b in epoch_batches(
                len(self.indices),
                self.batch_size,
                epoch=self.epoch,
                seed=self.seed,
                shuffle=self.shuffle,
                drop_last=self.drop_last,
                rank=self.rank,
                world_size=self.world_size,
            )
        ]

    def __len__(self) -> int:
        return len(self.batches())

    def generator(self, batch: int) -> torch.Generator:
        """The random stream of one batch's augmentation: seeded by seed, epoch, rank and batch number,
        so a batch does not depend on which thread made it, or on the batches before it."""
        g = torch.Generator()  # on the CPU whatever the device: a few numbers per image
        g.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, self.rank, batch]).generate_state(1)[0]))
        return g

    def _make(self, index: np.ndarray, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = to_device(torch.from_numpy(index), self.images.device)
        images, labels = self.images, self.labels[rows]
        if self.pin:  # only the batch crosses the bus, from page-locked memory so asynchronously
            images = gather(images, rows).pin_memory().to(self.device, non_blocking=True)
            labels = labels.pin_memory().to(self.device, non_blocking=True)
            rows = torch.arange(len(index), device=self.device)
        return self.transform(images, rows, generator), labels

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        plan = self.batches()
        if self.workers == 0:
            for k, index in enumerate(plan):
                yield self._make(index, self.generator(k))
            return
        # While the consumer works on batch k, `workers` threads make batches k+1 .. k+workers.
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="loader")
        pending: deque[Future] = deque()
        try:
            for k, index in enumerate(plan):
                pending.append(pool.submit(self._make, index, self.generator(k)))
                if len(pending) > self.workers:
                    yield pending.popleft().result()  # a producer's exception is raised here
            while pending:
                yield pending.popleft().result()
        finally:  # also when the consumer stops early: drop what was not started, wait for the rest
            pool.shutdown(wait=True, cancel_futures=True)
