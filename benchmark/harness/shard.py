"""Sharding a run over torchrun ranks: who computes which batch, and when everyone waits.

The split is cut into a fixed grid of batches (items [j*B, (j+1)*B)), independent of the number
of ranks; batch j belongs to rank j mod K. No item is padded or repeated at the tail (the last
batch is just shorter), every item has exactly one owner, and a batch holds the same items
whatever K is — so a sharded run's merged output equals a single-process run's, byte for byte,
and a run resumed with another K still lines up with the journal it continues.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world_size == self.rank


def batch_grid(n: int, batch_size: int) -> list[list[int]]:
    """The fixed batches of a split of n items: [0..B), [B..2B), ..., the last one shorter."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


def shard_from_env() -> Shard:
    """The rank layout torchrun (or any launcher setting RANK/WORLD_SIZE) gave this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    return Shard(rank=int(os.environ["RANK"]), world_size=world,
                 local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def init(shard: Shard, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPU. A no-op for one process."""
    if not shard.distributed or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if backend == "nccl" else {}
    torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(hours=2), **kwargs)


def barrier(shard: Shard) -> None:
    if shard.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()


def total(shard: Shard, value: int, device: torch.device) -> int:
    """The sum of `value` over the ranks (every rank must call this; it doubles as a barrier)."""
    if not shard.distributed:
        return value
    t = torch.tensor([int(value)], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")
    torch.distributed.all_reduce(t)
    return int(t.item())


def finish(shard: Shard) -> None:
    if shard.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
