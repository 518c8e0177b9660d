"""The run's data loaders: one per split for the whole run, persistent workers.

The synthetic sample cache is filled before the first loader exists (``setup.build``), so the
workers, forked once, inherit every sample. The epoch and the augmentation settings in force
travel with the batch indices (:class:`EpochBatches`), so a live augmentation change still
reaches the workers at the next epoch without forking them again. Workers leave SIGINT/SIGTERM
to the trainer, which stops cleanly and then shuts them down (:meth:`Loaders.close`).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from trainer.data.augment import Augment
from trainer.data.dataset import collate_native


class EpochBatches(Sampler[list]):
    """Batches of one epoch in a deterministic order (seed, epoch), this rank's share, from a
    given batch onwards, so a resumed run continues mid-epoch exactly where it stopped.

    With ``augment`` set, each index is ``(i, epoch, params)`` (SegDataset's tuple key): the
    epoch and the augmentation settings in force are read in the main process when the epoch's
    iteration starts and travel with the indices, so persistent loader workers need no re-fork."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int, steps: int,
                 rank: int = 0, world: int = 1, augment: Augment | None = None):
        self.n, self.bs, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start, self.steps, self.rank, self.world = start, steps, rank, world
        self.augment = augment

    def __iter__(self) -> Iterator[list]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[self.rank::self.world].tolist()
        if self.augment is not None:
            params = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in self.augment.params().items())
            perm = [(i, self.epoch, params) for i in perm]
        for b in range(self.start, self.steps):
            yield perm[b * self.bs:(b + 1) * self.bs]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def worker_init(_worker_id: int, close_fds: tuple = ()) -> None:
    """In each loader worker: leave Ctrl-C and SIGTERM to the trainer, which stops cleanly
    (checkpoint, 'stopped') and then shuts the workers down; a worker killed by a signal sent to
    the whole process group would turn that stop into a crash. A worker whose trainer dies exits
    by itself. ``close_fds``: the trainer's run-directory lock (an flock: a forked worker shares
    it, so a worker outliving a SIGKILLed trainer for a few seconds would refuse the resume)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:  # already closed in this process: nothing of ours to release
            continue


def num_workers_for(setting: Any, world_size: int = 1, cpus: int | None = None) -> int:
    """``training.num_workers``: an integer as given; ``auto``: one less than this process's share
    of the CPUs (``cpus // world_size - 1``), at most 8 and at least 0. On a 2-core machine that
    is 1 worker, on a 16-core GPU machine 8 (4 per process with 2 ranks)."""
    if setting != "auto":
        return int(setting)
    if not cpus:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus // max(world_size, 1) - 1))



class Loaders:
    """The train and validation DataLoaders of one run (``c``: its Components)."""

    def __init__(self, c: Any):
        self.c = c
        self._train: DataLoader | None = None
        self._val: DataLoader | None = None
        self._closer_registered = False

    def train(self, epoch: int, start: int) -> DataLoader:
        """This epoch's batches from batch ``start`` on: the run's one train loader, its sampler
        pointed at the epoch before each iteration."""
        c = self.c
        if self._train is None:
            t = c.cfg.training
            sampler = EpochBatches(len(c.train_ds), t.batch_size, c.cfg.seed, epoch, start,
                                   c.steps_per_epoch, c.dist.rank, c.dist.world_size, augment=c.augment)
            self._train = DataLoader(c.train_ds, batch_sampler=sampler, **self._kw())
        sampler = self._train.batch_sampler
        sampler.epoch, sampler.start = epoch, start
        return self._train

    def val(self) -> DataLoader:
        c = self.c
        if self._val is None:
            idx = list(range(len(c.val_ds)))[c.dist.rank::c.dist.world_size]
            subset = torch.utils.data.Subset(c.val_ds, idx)
            self._val = DataLoader(subset, batch_size=c.cfg.training.batch_size, shuffle=False,
                                   collate_fn=collate_native, **self._kw())
        return self._val

    def _kw(self) -> dict:
        w = self.c.num_workers
        if w and not self._closer_registered:
            import atexit

            # runs before multiprocessing's own exit handler (atexit is last-in first-out), which
            # would terminate() the workers and wait for them forever: they ignore SIGTERM
            atexit.register(self.close)
            self._closer_registered = True
        lock = getattr(self.c, "lock_fd", None)
        init = functools.partial(worker_init, close_fds=(lock,) if lock is not None else ())
        return {"num_workers": w, "pin_memory": self.c.device.type == "cuda", "persistent_workers": w > 0,
                **({"worker_init_fn": init} if w else {})}

    def close(self) -> None:
        """Stop the persistent workers (idempotent): the normal shutdown first (each worker is
        told to exit), then SIGKILL for any that did not."""
        for name in ("_train", "_val"):
            loader = getattr(self, name)
            setattr(self, name, None)
            it = getattr(loader, "_iterator", None) if loader is not None else None
            if it is None or not hasattr(it, "_shutdown_workers"):
                continue
            workers = list(getattr(it, "_workers", ()))
            it._shutdown_workers()
            for w in workers:
                if w.is_alive():
                    w.kill()
                    w.join(timeout=5)
