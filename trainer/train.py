"""The training loop: a short ``train()`` over epochs plus ``train_step()``.

Setup (data, model, optimizer, run directory, resume) lives in :mod:`trainer.build` and :mod:`trainer.rundir`; this module
only runs epochs, answers control commands between steps and writes the record.
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

import torch

from trainer import checkpoint as ckpt
from trainer.metrics import FScoreMeter
from trainer.previews import Previews
from trainer.runfiles import open_regular
from trainer.schedule import lr_at
from trainer.rundir import Components
from trainer.steer import Requests
from trainer.steplog import StepWindow
from trainer.valscore import validate


class StopRun(Exception):
    """Raised inside the loop when a stop command (or SIGTERM) asks the run to end."""


class Trainer:
    def __init__(self, c: Components):
        self.c = c
        self.cfg = c.cfg
        self.live = c.steering.live  # shared dict: the steering object updates it
        self.events = c.events
        self.dist = c.dist
        self.step = c.state.get("step", 0)  # optimizer steps taken so far
        self.epoch = c.state.get("epoch", 0)  # last completed epoch
        self.step_in_epoch = c.state.get("step_in_epoch", 0)
        self.best_val_f = c.state.get("best_val_f", -1.0)
        self.best_epoch = c.state.get("best_epoch", 0)
        self.since_best = c.state.get("since_best", 0)
        self.epoch_times: list[float] = list(c.state.get("epoch_times", []))
        # the train sums of the epoch a mid-epoch checkpoint interrupted (None: start it afresh)
        self.progress = _valid_progress(c.state.get("progress"), self.epoch + 1) if self.step_in_epoch else None
        self.meter: FScoreMeter | None = None
        self.loss_sum = torch.zeros(())
        self.n_ok, self.t0 = 0, time.perf_counter()
        self.steps_per_epoch = c.steps_per_epoch
        self.logged_any = False  # has this process logged a step event yet
        self.sigterm = False
        self.skipped = 0
        self._control_items: list[dict] = []  # rank 0: control lines read, not yet applied
        self._step_flags = (False, 0)  # (sigterm, control lines) agreed by the last train_step
        # BatchNorm running statistics, restored when a step is skipped: the forward pass of a
        # non-finite batch has already folded NaN/Inf into them
        self._bn = [b for m in c.raw_model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                    for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        self._bn_snapshot = [b.clone() for b in self._bn]
        self.printer = None  # callable(str) for the per-epoch line on stdout
        # mask previews (rank 0): the same few validation images predicted at every validation
        self.previews = Previews(c.run_dir, c.val_ds) if self.dist.is_main else None
        self.rank_log = None
        if self.cfg.debug.rank_log:
            (c.run_dir / "ranks").mkdir(parents=True, exist_ok=True)  # rank 0 may not have made run_dir yet
            self.rank_log = os.fdopen(open_regular(c.run_dir / "ranks" / f"rank{self.dist.rank}.jsonl",
                                                   os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a")
            self.rank_log.write(f'{{"rank":{self.dist.rank},"seed":{torch.initial_seed()}}}\n')

    # --- schedule ---------------------------------------------------------------------------
    def lr_for(self, step: int) -> float:
        spe = self.steps_per_epoch
        return lr_at(step, self.live["lr"], self.live["warmup_epochs"] * spe, self.live["epochs"] * spe,
                     self.cfg.training.min_lr_ratio)

    # --- control ---------------------------------------------------------------------------
    def _sync(self, nonfinite: torch.Tensor | None = None) -> tuple[bool, bool, int]:
        """The step's one collective (one host sync without DDP): whether any rank saw a
        non-finite loss or gradient, whether any rank got SIGTERM, and how many new control
        lines rank 0 read (kept in ``_control_items`` until :meth:`_apply_control`)."""
        if self.dist.is_main:
            self._control_items += self.c.steering.read()
        v = torch.tensor([0, int(self.sigterm), len(self._control_items)], dtype=torch.int32)
        if nonfinite is not None:
            v = v.to(nonfinite.device, non_blocking=True)
            v[0] = nonfinite
        bad, sig, n = self.dist.sync_max(v)
        return bool(bad), bool(sig), n

    def _apply_control(self, sigterm: bool, n: int) -> None:
        """Apply the ``n`` control lines the last :meth:`_sync` announced (same step on every
        rank), stay paused while a pause is in force, stop on SIGTERM."""
        while True:
            if n:
                items = self.dist.broadcast_list(self._control_items, n)
                self._control_items = []
                self._handle(self.c.steering.handle_items(items, self.epoch + 1, self.step))
            if sigterm:
                raise StopRun("SIGTERM")
            if not self.c.steering.paused:
                return
            time.sleep(0.1)
            _, sigterm, n = self._sync()

    def control_point(self) -> None:
        """Between steps (epoch start, validation): read, agree on and apply new commands."""
        _, sigterm, n = self._sync()
        self._apply_control(sigterm, n)

    def _handle(self, req: Requests) -> None:
        if req.checkpoint:
            self.save("last", mid_epoch=True)
        if req.stop:
            raise StopRun(req.stop)

    # --- loop -------------------------------------------------------------------------------
    def train(self) -> str:
        """Run epochs until the (live) epoch count; returns the end reason."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigterm)
        reason = "completed"
        try:
            while self.epoch < self.live["epochs"] or self._last_look():
                self.train_epoch(self.epoch + 1)
                patience = self.live["patience"]
                if patience and self.since_best >= patience:
                    reason = "early_stop"
                    break
        except StopRun:
            self.save("last", mid_epoch=True)
            reason = "stopped"
        return reason

    def _last_look(self) -> bool:
        """The epochs are done: answer what came in meanwhile (a late ``set epochs`` goes on
        training; a late ``stop`` is acked and the run ends completed). True to train on."""
        try:
            self.control_point()
        except StopRun:
            return False
        return self.epoch < self.live["epochs"]

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.sigterm = True

    def train_epoch(self, epoch: int) -> None:
        """One epoch: steps over the loader, then validation, the epoch's record and checkpoints."""
        loader = self._begin_epoch(epoch)
        window = StepWindow(self.c.device)  # the steps since the last step event
        self.control_point()  # commands sent before the epoch's first step apply to it
        for images, masks, wait in self._batches(loader):
            lr = self.lr_for(self.step)
            loss, pred, ok = self.train_step(images, masks, lr)
            self._count_step(loss, pred, masks, ok)
            window.add(loss, ok, wait, images.shape[0] * self.dist.world_size)
            self._log_step(epoch, lr, window)
            self._between_steps()
        self._end_epoch(epoch)

    def _begin_epoch(self, epoch: int):
        """The epoch's augmentation, its loader (from the step a mid-epoch resume stopped at) and
        fresh train sums (a resumed epoch's sums so far, when its checkpoint has them)."""
        c = self.c
        c.start_epoch_augmentation()
        c.model.train()
        loader = c.train_loader(epoch, self.step_in_epoch)
        self.meter = FScoreMeter(device=c.device)
        self.loss_sum = torch.zeros((), device=c.device)
        self.n_ok, self.skipped, elapsed = 0, 0, 0.0
        if self.progress is not None:  # resumed mid-epoch: this epoch's train numbers so far
            elapsed = self._restore_progress(self.progress)
            self.progress = None
        self.t0 = time.perf_counter() - elapsed
        return loader

    def _batches(self, loader):
        """The loader's batches on the device, each with the seconds spent waiting for it."""
        c = self.c
        t_wait = time.perf_counter()
        for images, masks in loader:
            wait = time.perf_counter() - t_wait
            images = images.to(c.device, non_blocking=True)
            masks = masks.to(c.device, non_blocking=True).long()  # uint8 on the way, int64 on the device
            if c.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, masks, wait
            t_wait = time.perf_counter()

    def _count_step(self, loss: torch.Tensor, pred: torch.Tensor, masks: torch.Tensor, ok: bool) -> None:
        self.step += 1
        self.step_in_epoch += 1
        if ok:
            self.loss_sum += loss
            self.n_ok += 1
            self.meter.update(pred, masks)

    def _log_step(self, epoch: int, lr: float, window: StepWindow) -> None:
        """A step event every log_every steps, and also the process's first step (readers learn
        the run's cadence at once: the stall bound, "waiting for the first step") and each
        epoch's last."""
        first_of_process, self.logged_any = not self.logged_any, True
        if self.dist.is_main and (self.step % self.cfg.training.log_every == 0 or first_of_process
                                  or self.step_in_epoch == self.steps_per_epoch):
            w = window.take()
            self.events.emit("step", epoch=epoch, step=self.step, loss=w["loss"], lr=lr, gamma=self.live["gamma"],
                             samples_per_s=w["samples_per_s"], data_wait=w["data_wait"])

    def _between_steps(self) -> None:
        if self.cfg.debug.step_delay:
            time.sleep(self.cfg.debug.step_delay)
        self._apply_control(*self._step_flags)  # commands read during this step apply to the next

    def _end_epoch(self, epoch: int) -> None:
        """The epoch's train numbers (every rank's), validation, previews, the epoch event and
        the checkpoints."""
        train = self.meter.compute(self.dist)
        sums = self.dist.all_reduce_sum(torch.stack([self.loss_sum, torch.tensor(float(self.n_ok), device=self.c.device)]))
        train_loss = (sums[0] / sums[1].clamp(min=1)).item() if sums[1].item() else float("nan")
        val = self.validate()
        self._write_previews(epoch)
        self.epoch = epoch
        self.step_in_epoch = 0
        epoch_time = time.perf_counter() - self.t0
        self.epoch_times = (self.epoch_times + [epoch_time])[-5:]
        improved = val["f"] > self.best_val_f and math.isfinite(val["f"])
        if improved:
            self.best_val_f, self.best_epoch, self.since_best = val["f"], epoch, 0
        else:
            self.since_best += 1
        if self.dist.is_main:
            self._record_epoch(epoch, train_loss, train, val, epoch_time)
        self.save("last")
        if improved:
            self.save("best")

    def _record_epoch(self, epoch: int, train_loss: float, train: dict, val: dict, epoch_time: float) -> None:
        """The epoch event (rank 0), and its line on stdout."""
        remaining = max(0, self.live["epochs"] - epoch)
        self.events.emit(
            "epoch", epoch=epoch, step=self.step,
            train_loss=train_loss,
            train_f=train["f"], val_loss=val["loss"], val_f=val["f"], pooled_f=val["pooled_f"],
            per_class_f=val["per_class"], train_per_class_f=train["per_class"],
            lr=self.lr_for(max(self.step - 1, 0)), gamma=self.live["gamma"], alpha=self.live["alpha"],
            dropout=self.live["dropout"], epoch_time=round(epoch_time, 3),
            eta_s=round(remaining * sum(self.epoch_times) / len(self.epoch_times), 1),
            best_val_f=self.best_val_f, best_epoch=self.best_epoch, skipped_steps=self.skipped,
            epochs=self.live["epochs"],
        )
        if self.printer:
            self.printer(
                f"epoch {epoch}/{self.live['epochs']} | train loss {train_loss:.4f} "
                f"F {train['f']:.4f} | val loss {val['loss']:.4f} F {val['f']:.4f} (best {self.best_val_f:.4f} "
                f"@{self.best_epoch}) | lr {self.live['lr']:.2e} | {epoch_time:.1f}s"
                + (f" | {self.skipped} steps skipped (non-finite)" if self.skipped else ""))

    def train_step(self, images: torch.Tensor, masks: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """One optimizer step. Returns (detached loss, argmax prediction, whether it was applied).

        A non-finite loss or gradient norm skips the step (the weights are never touched) and is
        reported as a warning event.
        """
        c = self.c
        for g in c.optimizer.param_groups:
            g["lr"] = lr
        if self.rank_log:
            self.rank_log.write(f'{{"step":{self.step + 1},"lr":{lr!r},"gamma":{self.live["gamma"]!r}}}\n')
            self.rank_log.flush()
        if self.cfg.debug.inf_pixels_at_step == self.step + 1:  # fault injection: a corrupt image
            h, w = images.shape[-2:]
            images = images.clone()
            images[0, :, : max(1, h // 4), : max(1, w // 4)] = float("inf")
        if self._bn:
            torch._foreach_copy_(self._bn_snapshot, self._bn)
        with torch.autocast(device_type=c.device.type, dtype=torch.bfloat16, enabled=c.amp):
            logits = c.model(images)
            loss, _parts = c.loss_fn(logits, masks)
        if self.cfg.debug.nan_at_step == self.step + 1:
            loss = loss * float("nan")
        c.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.live["grad_clip"]
        gnorm = torch.nn.utils.clip_grad_norm_(c.raw_model.parameters(), clip if clip > 0 else float("inf"))
        nonfinite = ~(torch.isfinite(loss.detach()) & torch.isfinite(gnorm))
        # the step's one host sync: merged with the SIGTERM and control flags of every rank, so all
        # ranks skip together
        bad, sigterm, n = self._sync(nonfinite)
        self._step_flags = (sigterm, n)
        ok = not bad
        if ok:
            c.optimizer.step()
        else:
            c.optimizer.zero_grad(set_to_none=True)
            if self._bn:  # the weights are untouched; so must the BatchNorm statistics be
                torch._foreach_copy_(self._bn, self._bn_snapshot)
            self.skipped += 1
            if self.dist.is_main:
                self.events.emit("warning", code="nonfinite_loss", epoch=self.epoch + 1, step=self.step + 1,
                                 message=f"non-finite loss or gradient at step {self.step + 1}: step skipped, "
                                         "weights and BatchNorm statistics unchanged",
                                 loss=float(loss.detach().float().item()))
        # max(1).indices == argmax(1) (first maximum, NaN as maximum), at half the CPU time:
        # argmax over the class dim was 7.5% of a CPU step (bench/RESULTS.md, item 6)
        return loss.detach().float(), logits.detach().max(1).indices, ok

    def validate(self) -> dict[str, Any]:
        """Validation F and loss of every rank's share (valscore.validate), polling control as it goes."""
        return validate(self.c, self._bn, self.control_point)

    def _write_previews(self, epoch: int) -> None:
        """previews/epoch_NNNN.png before the epoch event names the epoch; a folder that cannot be
        written (a link, a file, a full disk) stops previews with one warning, never the run."""
        if self.previews is None or self.previews.failed:
            return
        try:
            self.previews.write(epoch, self.c.raw_model, self.c.device, self.c.amp)
        except OSError as e:
            self.previews.failed = str(e)
            self.events.emit("warning", code="previews_failed", epoch=epoch, step=self.step,
                             message=f"mask previews stopped: {e.strerror or e}")

    # --- checkpoints ------------------------------------------------------------------------
    def save(self, kind: str, mid_epoch: bool = False) -> None:
        """Write checkpoints/<kind>.pt atomically (rank 0); never with non-finite weights."""
        c = self.c
        # every rank's own RNG states (dropout, its GPU), gathered: all ranks save at the same points
        rngs = self.dist.gather_objects(ckpt.rng_state(c.device)) if self.dist.enabled else None
        progress = self._progress() if mid_epoch else None  # a collective under DDP: every rank
        if not self.dist.is_main:
            return
        state = c.raw_model.state_dict()
        if not ckpt.all_finite(state):
            self.events.emit("warning", code="checkpoint_refused", epoch=self.epoch, step=self.step,
                             message=f"{kind} checkpoint not written: the weights hold NaN/Inf")
            return
        payload = {
            "model": state, "optimizer": c.optimizer.state_dict(),
            "epoch": self.epoch, "step": self.step,
            "step_in_epoch": self.step_in_epoch if mid_epoch else 0,
            "best_val_f": self.best_val_f, "best_epoch": self.best_epoch, "since_best": self.since_best,
            "epoch_times": self.epoch_times, "live": dict(self.live),
            "answered": sorted(c.steering.answered), "control": c.steering.reader.position(),
            "progress": progress, "config": c.resolved_config(),
            "rng": rngs[0] if rngs else ckpt.rng_state(c.device), "params": c.params,
            "world_size": self.dist.world_size, "steps_per_epoch": self.steps_per_epoch,
        }
        if rngs:
            payload["rng_ranks"] = rngs
        path = c.run_dir / "checkpoints" / f"{kind}.pt"
        try:
            ckpt.save(path, payload, midway=ckpt.fault_midway(self.cfg.debug, self.epoch))
        except OSError as e:
            self.events.emit("warning", code="checkpoint_failed", epoch=self.epoch, step=self.step,
                             message=f"could not write {path.name}: {e.strerror or e}; the previous {kind} checkpoint is intact")
            return
        self.events.emit("checkpoint", kind=kind, path=f"checkpoints/{kind}.pt", epoch=self.epoch, step=self.step)

    def _progress(self) -> dict[str, Any] | None:
        """The epoch in progress's train sums (every rank's, summed), saved with a mid-epoch
        checkpoint: a run stopped during validation resumes with the epoch's real train numbers."""
        if self.meter is None or not self.step_in_epoch:
            return None
        meter = {k: self.dist.all_reduce_sum(v).cpu() for k, v in self.meter.state().items()}
        dev = self.c.device
        sums = self.dist.all_reduce_sum(torch.stack([
            self.loss_sum.detach().double(), torch.tensor(float(self.n_ok), dtype=torch.float64, device=dev),
            torch.tensor(float(self.skipped), dtype=torch.float64, device=dev)])).cpu()
        return {"epoch": self.epoch + 1, "meter": meter, "loss_sum": float(sums[0]), "n_ok": int(sums[1]),
                "skipped": int(sums[2]), "elapsed": time.perf_counter() - self.t0}

    def _restore_progress(self, p: dict[str, Any]) -> float:
        """Rank 0 takes the saved sums (they are every rank's); returns the epoch's seconds so far."""
        if self.dist.is_main:
            self.meter.load_state(p["meter"])
            self.loss_sum += float(p["loss_sum"])
            self.n_ok = int(p["n_ok"])
            self.skipped = int(p["skipped"])
        return float(p["elapsed"])


def _valid_progress(p: Any, epoch: int) -> dict[str, Any] | None:
    """A checkpoint's epoch progress if it is for ``epoch`` and well formed (older checkpoints
    have none: the resumed epoch then reports the train numbers of its remaining steps)."""
    if not isinstance(p, dict) or p.get("epoch") != epoch or not isinstance(p.get("meter"), dict):
        return None
    if not all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool)
               for k in ("loss_sum", "n_ok", "skipped", "elapsed")):
        return None
    return p
