"""Checkpoints: written atomically (temp file + rename), loaded with weights_only=True."""

from __future__ import annotations

import errno
import io
import os
import time
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from trainer.record import atomic_write_bytes


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states; for CUDA only the state of its own GPU (``device``, default the
    current one): a list over every visible GPU cannot be restored where fewer are visible, and
    another rank's GPU is not this rank's business."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore :func:`rng_state`'s states; the CUDA one onto this process's GPU (``device``).

    Older checkpoints hold a list with one state per visible GPU: the entry of this GPU's index
    is used when there is one."""
    random.setstate(_tuplify(state["python"]))
    np.random.set_state(_tuplify(state["numpy"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):
        idx = device.index or 0
        if idx >= len(cuda):
            return
        cuda = cuda[idx]
    torch.cuda.set_rng_state(cuda, device)


def rank_rng(payload: dict[str, Any], rank: int) -> dict[str, Any]:
    """The RNG states rank ``rank`` saved (``rng_ranks``, written under DDP); rank 0's ``rng``
    where the checkpoint has none for it (one process, or a resume onto more processes)."""
    ranks = payload.get("rng_ranks") or []
    if 0 <= rank < len(ranks):
        return ranks[rank]
    return payload["rng"]


def _tuplify(x: Any) -> Any:
    """weights_only loading returns lists where the RNG APIs want tuples."""
    if isinstance(x, list):
        return tuple(_tuplify(v) for v in x)
    return x


def _plain_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Make RNG states loadable with weights_only=True (plain containers, tensors, numbers)."""
    np_state = state["numpy"]
    out = dict(state)
    out["numpy"] = [np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), *np_state[2:]]
    out["python"] = [state["python"][0], list(state["python"][1]), state["python"][2]]
    return out


def _unplain_rng(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    n = state["numpy"]
    out["numpy"] = (n[0], n[1].numpy().astype(np.uint32), *n[2:])
    p = state["python"]
    out["python"] = (p[0], tuple(p[1]), p[2])
    return out


def save(path: Path, payload: dict[str, Any], midway: Callable[[], None] | None = None) -> None:
    payload = dict(payload)
    payload["rng"] = _plain_rng(payload["rng"])
    if payload.get("rng_ranks"):
        payload["rng_ranks"] = [_plain_rng(r) for r in payload["rng_ranks"]]
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue(), midway=midway)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if "rng" in payload:
        payload["rng"] = _unplain_rng(payload["rng"])
    if payload.get("rng_ranks"):
        payload["rng_ranks"] = [_unplain_rng(r) for r in payload["rng_ranks"]]
    return payload


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all().item() for t in state_dict.values() if t.is_floating_point())


def fault_midway(debug, epoch: int):
    """Fault injection for tests (debug.checkpoint_*): what runs halfway through a checkpoint
    write of epoch ``epoch``, or None."""
    fail = bool(debug.checkpoint_enospc_from_epoch) and epoch >= debug.checkpoint_enospc_from_epoch
    if not debug.checkpoint_write_pause and not fail:
        return None

    def midway() -> None:
        if debug.checkpoint_write_pause:
            time.sleep(debug.checkpoint_write_pause)
        if fail:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (debug.checkpoint_enospc_from_epoch)")

    return midway
