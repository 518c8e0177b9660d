"""Which GPUs each run gets: `segwatch run`, a plan's scheduler and `segwatch resume`.

GPU ids are those of ``nvidia-smi -L`` (PCI bus order; children get ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
so CUDA numbers them the same way) or the entries of the caller's ``CUDA_VISIBLE_DEVICES``. A run
that is given no ids (``None``) inherits every visible GPU and, with N processes, uses the first N.
Sharing a GPU between runs is never silent: :func:`place` returns a note for every shared GPU, and
the scheduler and ``resume`` say so too. Pure Python, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

ALIVE = ("starting", "running", "paused")


def used_ids(assigned: str | None, nproc: int, visible: Sequence[str]) -> list[str]:
    """The GPU ids a run started with ``CUDA_VISIBLE_DEVICES=assigned`` (None: inherited) occupies."""
    ids = [g for g in assigned.split(",") if g] if assigned else list(visible)
    return ids[:max(1, nproc)]


def place(nprocs: Sequence[int], gpus: Sequence[str], share: bool = False,
          names: Sequence[str] | None = None) -> tuple[list[str | None], list[str]]:
    """(``CUDA_VISIBLE_DEVICES`` per run, None = inherit; notes naming every GPU that runs share).

    Disjoint GPUs while there are enough; then round-robin, and each shared GPU gets a note.
    ``share`` (``--same-gpu``): every run inherits every GPU, on purpose, without notes.
    """
    names = list(names or [f"run {i + 1}" for i in range(len(nprocs))])
    if share or not gpus:
        return [None] * len(nprocs), []
    out: list[str | None] = []
    if len(gpus) < 2 or len(nprocs) < 2:
        out = [None] * len(nprocs)
    else:
        pos = 0
        for n in nprocs:
            if n >= len(gpus):
                out.append(None)  # needs every GPU: inherit them all
                continue
            out.append(",".join(gpus[(pos + k) % len(gpus)] for k in range(n)))
            pos += n
    users: dict[str, list[str]] = {}
    for a, n, nm in zip(out, nprocs, names):
        for g in used_ids(a, n, gpus):
            users.setdefault(g, []).append(nm)
    need = sum(min(n, len(gpus)) for n in nprocs)
    notes = [f"GPU {g} is SHARED by {', '.join(who)} ({need} GPUs needed, {len(gpus)} visible: "
             "--same-gpu to share on purpose, --serial to run one after the other)"
             for g, who in users.items() if len(who) > 1]
    return out, notes


def held_by_run(start: dict, visible: Sequence[str]) -> list[str]:
    """GPU ids a run's trainer uses, from its start event (``gpus``, else ``cuda_visible_devices``)."""
    if "cuda" not in str(start.get("device") or ""):
        return []
    ids = [str(g["visible_id"]) for g in start.get("gpus") or [] if isinstance(g, dict) and g.get("visible_id") is not None]
    if ids:
        return ids
    world = start.get("world_size") if isinstance(start.get("world_size"), int) else 1
    cvd = start.get("cuda_visible_devices")
    return used_ids(cvd if isinstance(cvd, str) else None, world, visible)


def busy_gpus(runs_dir: Path, visible: Sequence[str], exclude: Path | None = None) -> dict[str, str]:
    """``{gpu id: run name}`` for the GPUs the live trainers under ``runs_dir`` hold."""
    from app.runlib import Run, list_runs

    busy: dict[str, str] = {}
    for d in list_runs(runs_dir):
        if exclude is not None and Path(d).resolve() == Path(exclude).resolve():
            continue
        run = Run(d)
        try:
            run.refresh()
        except OSError:
            continue
        st = run.state
        if st.status not in ALIVE or run.process_alive() is not True or not st.start:
            continue
        for g in held_by_run(st.start, visible):
            busy.setdefault(g, st.name or run.name)
    return busy


def resume_gpus(run_dir: Path, runs_dir: Path, nproc: int, visible: Sequence[str],
                previous: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """(``CUDA_VISIBLE_DEVICES`` for a resumed run, a note when it must share): its previous GPUs
    if they are free, else the first free ones; never silently a GPU another live run holds."""
    if not visible:
        return None, None
    busy = busy_gpus(runs_dir, visible, exclude=run_dir)
    free = [g for g in visible if g not in busy]
    n = max(1, min(nproc, len(visible)))
    prev = [g for g in previous if g in visible]
    if len(prev) >= n and all(g in free for g in prev[:n]):
        return ",".join(prev[:n]), None
    if len(free) >= n:
        return ",".join(free[:n]), None
    take = (free + [g for g in visible if g not in free])[:n]
    shared = [g for g in take if g in busy]
    return ",".join(take), (f"no free GPU for all {n} process(es): GPU {', '.join(shared)} SHARED with "
                            f"{', '.join(sorted({busy[g] for g in shared}))}")
