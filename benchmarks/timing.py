"""Interleaved timing: the fair way to compare two implementations on a noisy, shared machine."""

import statistics
import time
from collections.abc import Callable


def interleaved(
    contenders: dict[str, Callable[[], None]], rounds: int, steps: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender.

    Every round runs `steps` calls of each contender in turn, so a slow spell of the machine
    (another process, thermal limits) hits all of them alike; the median over rounds drops outliers.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(s) for name, s in samples.items()}


def machine() -> str:
    """One line naming the torch build, its threads and the processor."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}{gpu}"
