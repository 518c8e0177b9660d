"""torch.distributed helpers: a no-op context for one process, DDP for torchrun launches."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_objects(self, items: list) -> list:
        """Rank 0's list reaches every rank (one small broadcast when there is nothing to say)."""
        if not self.enabled:
            return items
        n = torch.tensor([len(items)], dtype=torch.long)
        tdist.broadcast(n, src=0)
        if int(n.item()) == 0:
            return []
        box = [items if self.rank == 0 else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if any rank raised the flag (used for stop/early-stop decisions)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.long)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        if self.enabled and tdist.is_initialized():
            tdist.destroy_process_group()


def init_distributed(device_kind: str, timeout_s: float = 120.0) -> DistContext:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set), else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world, local_rank=local)
