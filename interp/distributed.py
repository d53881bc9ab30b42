"""torch.distributed in one place: who am I, and the few collectives the pipeline needs.

Everything works unchanged in a single process (rank 0 of 1) and under ``torchrun``, where the
process group is created from the environment on first use: gloo on CPU, NCCL on CUDA (each rank
then uses ``cuda:LOCAL_RANK``). The training loop and the cache writer call only these helpers, so
one code path serves one process, several CPU processes and several GPUs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist


def launched() -> bool:
    """True when started by ``torchrun`` (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(backend: str | None = None) -> None:
    """Create the process group from the environment if launched and not yet created."""
    if not launched() or not dist.is_available() or dist.is_initialized():
        return
    if torch.cuda.is_available() and backend in (None, "nccl"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    dist.init_process_group(backend or "gloo", timeout=timedelta(minutes=30))


def shutdown() -> None:
    """Destroy the process group this process created (the end of a ``torchrun`` job), as torch
    asks of every rank before it exits; nothing when there is none. Call it only when every rank
    finished: a rank left waiting in a collective would hold it up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_SOLO = False


@contextmanager
def solo() -> Iterator[None]:
    """Inside, this rank acts as a single process (no collectives, it is its own rank 0): for
    site-parallel training, where each rank trains a different site's SAE on its own."""
    global _SOLO
    old, _SOLO = _SOLO, True
    try:
        yield
    finally:
        _SOLO = old


def global_rank() -> int:
    """This process's rank in the launched job, even inside ``solo()``."""
    init()
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when not distributed or inside ``solo()``."""
    init()
    if _SOLO:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def local_device(default: str | None = None) -> torch.device:
    """The device this rank should use: ``cuda:LOCAL_RANK`` when distributed on GPUs."""
    if default:
        return torch.device(default)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0)
    return torch.device("cpu")


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum``, ``max`` or ``mean``); a no-op in one process."""
    if world()[1] > 1:
        if op == "mean":
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= world()[1]
        else:
            dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s tensors to every rank (start from identical weights)."""
    if world()[1] > 1:
        for t in tensors:
            dist.broadcast(t, src=src)


def all_gather_object(obj: object) -> list[object]:
    """Every rank's ``obj`` (JSON-like values only), in rank order."""
    rank, size = world()
    if size == 1:
        return [obj]
    out: list[object] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (same shape on every rank) concatenated along dim 0, in rank order."""
    size = world()[1]
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def batch_sq_dev(x: torch.Tensor) -> torch.Tensor:
    """``sum ||x - mean||^2`` over the *global* batch, divided by the number of ranks.

    A rank's loss ``local_sse / batch_sq_dev`` then averages (as gradients are averaged) to the
    single-process ``global_sse / global_sq_dev`` exactly: data-parallel training optimises the
    same batch-normalised objective as one process on the whole batch.
    """
    size = world()[1]
    if size == 1:
        return (x - x.mean(0)).pow(2).sum()
    stats = torch.cat(
        [
            x.double().sum(0),
            x.double().pow(2).sum().reshape(1),
            torch.tensor([len(x)], dtype=torch.float64, device=x.device),
        ]
    )
    dist.all_reduce(stats)
    total, sq, n = stats[:-2], stats[-2], stats[-1]
    return ((sq - total.pow(2).sum() / n) / size).to(x.dtype)


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (ranks differ by at most one row)."""
    rank, size = world()
    return x if size == 1 else x.tensor_split(size)[rank]


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes a file), then the others (which read it)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
