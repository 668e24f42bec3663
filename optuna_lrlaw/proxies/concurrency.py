"""How many proxy runs one machine trains at once, and with how many threads each.

On the CPU torch spreads one run over the cores, so the jobs share them out as threads; on
a GPU, which small runs leave idle most of the time, several processes share the device.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

#: GPU memory a worker process holds besides its runs: the CUDA context and allocator slack.
_CUDA_CONTEXT_BYTES = 1 << 30
#: `training_memory` errs low: the resident memory of real runs was 1.5x to 3.7x its estimate.
_MEMORY_MARGIN = 4
#: The most jobs picked for one GPU: 8 processes of width-64 runs trained 6.8x the tokens of
#: one on an H200, 16 only 8.4x (issue "Many trials at once on one GPU").
_MAX_GPU_JOBS = 8


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, which containers narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs(device: torch.device, trials: int, run_memory: int) -> int:
    """How many runs to train at once. On the CPU one: torch's threads already keep the cores
    busy (the default ladder on 2 cores took 168 s as one job of 2 threads and 183 s as two of
    one thread each, whose runs took twice as long: `benchmarks/jobs.py`). On a GPU, which
    small runs leave idle, as many as its free memory holds (``run_memory`` bytes a run, with
    margin, plus a context a process), at most `_MAX_GPU_JOBS`, and never more than a rung's
    ``trials``, since the rungs are climbed in turn."""
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    jobs = min(_MAX_GPU_JOBS, trials, free // (_MEMORY_MARGIN * run_memory + _CUDA_CONTEXT_BYTES))
    return int(max(1, jobs))


def threads_per_job(device: torch.device, jobs: int) -> int | None:
    """The torch threads each job trains with: its share of the cores on the CPU (None: torch's
    own default, on a GPU, where the host threads only launch kernels)."""
    return max(1, usable_cores() // jobs) if device.type == "cpu" else None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Train with ``threads`` torch threads inside the block, as before it after."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
