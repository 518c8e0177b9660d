"""torch.distributed helpers: a no-op context for one process, DDP for torchrun launches.

Every tensor handed to a collective lives on ``DistContext.coll_device``, the device type the
process group has a backend for: NCCL registers only ``cuda``, so a CPU tensor there fails with
"No backend type associated with device type cpu" (emulated on a CPU machine with a gloo group
registered for ``cuda`` only: ``init_distributed(..., backend="cuda:gloo")``).

Per training step the ranks agree on everything they must agree on with ONE small all-reduce
(:meth:`DistContext.sync_max`: non-finite step, SIGTERM, number of new control lines); rank 0's
control lines follow in a broadcast only when there are some.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.distributed as tdist

CPU = torch.device("cpu")


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    coll_device: torch.device = field(default_factory=lambda: CPU)
    timeout_s: float = 120.0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sync_max(self, values: torch.Tensor) -> list[int]:
        """Element-wise maximum of an integer vector over the ranks, read back on the host: the one
        host sync of a step (the vector may be built on any device; it is moved to coll_device)."""
        if self.enabled:
            values = values.to(self.coll_device, non_blocking=True)
            tdist.all_reduce(values, op=tdist.ReduceOp.MAX)
        return values.tolist()

    def broadcast_list(self, items: list, n: int) -> list:
        """Rank 0's ``items`` on every rank, when every rank already knows there are ``n`` > 0 of them."""
        if not self.enabled:
            return items
        if n == 0:
            return []
        box = [items if self.is_main else None]
        tdist.broadcast_object_list(box, src=0, device=self.coll_device)
        return box[0]  # type: ignore[return-value]

    def broadcast_objects(self, items: list) -> list:
        """Rank 0's list reaches every rank (one small broadcast when there is nothing to say)."""
        if not self.enabled:
            return items
        n = torch.tensor([len(items) if self.is_main else 0], dtype=torch.long, device=self.coll_device)
        tdist.broadcast(n, src=0)
        return self.broadcast_list(items, int(n.item()))

    def broadcast_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` (same shapes and dtype on every rank) in place, in one
        collective (e.g. the BatchNorm statistics before validation)."""
        if not self.enabled or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1) for t in tensors]).to(self.coll_device)
        tdist.broadcast(flat, src=0)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            if t.device != self.coll_device:
                moved = t.to(self.coll_device)
                tdist.all_reduce(moved, op=tdist.ReduceOp.SUM)
                t.copy_(moved)
            else:
                tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if any rank raised the flag."""
        if not self.enabled:
            return flag
        return bool(self.sync_max(torch.tensor([1 if flag else 0], dtype=torch.long))[0])

    def gather_objects(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank (e.g. each rank's RNG state)."""
        if not self.enabled:
            return [obj]
        out: list = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def share_from_main(self, key: str, compute: Callable[[], Any], wait_s: float = 6 * 3600) -> Any:
        """``compute()`` on rank 0 only; the other ranks receive its (JSON) result through the
        rendezvous store, waiting up to ``wait_s`` (not the collective timeout: a cold cache of
        class frequencies may take longer than that, and no collective is open meanwhile)."""
        if not self.enabled:
            return compute()
        store = tdist.distributed_c10d._get_default_store()
        k = f"segwatch/{key}"
        if self.is_main:
            value = compute()
            store.set(k, json.dumps(value))
            return value
        store.wait([k], datetime.timedelta(seconds=wait_s))
        return json.loads(store.get(k).decode())

    def close(self) -> None:
        if self.enabled and tdist.is_initialized():
            tdist.destroy_process_group()


def collective_device(group: Any, compute: torch.device, local_rank: int) -> torch.device:
    """The device whose tensors ``group`` can reduce: the compute device if the group has a backend
    for its type, else CPU if it has one, else its first device type (CUDA: this rank's GPU)."""
    types = [d.type for d in getattr(group, "_device_types", [])] or ["cpu"]
    if compute.type in types:
        return compute
    if "cpu" in types:
        return CPU
    return torch.device("cuda", local_rank) if types[0] == "cuda" else torch.device(types[0])


def init_distributed(device: torch.device, timeout_s: float = 120.0, backend: str | None = None) -> DistContext:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set), else one process.

    ``backend``: default nccl for CUDA, gloo otherwise; tests pass ``"cuda:gloo"`` to emulate
    NCCL's device map on a machine without a GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    group = tdist.distributed_c10d._get_default_group()
    coll = collective_device(group, device, local)
    return DistContext(rank=rank, world_size=world, local_rank=local, coll_device=coll, timeout_s=timeout_s)
