"""Item 1: what logging costs the trainer, side by side with W&B (offline) and TensorBoard.

    python bench/logging_overhead.py [--rounds 30] [--block 10] [--quick] [--out DIR]

One model, one optimizer, one fixed list of real (augmented synthetic) batches, one process.
The same step loop (``Trainer.train_step`` + the F meter, exactly what ``Trainer.train_epoch``
does per step) runs in blocks of ``--block`` steps, the variants interleaved in a rotating order
for ``--rounds`` rounds:

- ``none``: no logging at all (no control polling, no event, no ``.item()``);
- ``segwatch``: ``Trainer.control_point()`` every step (Steering.poll -> ControlReader.poll:
  one ``os.stat`` of control.jsonl) and a ``step`` event every ``log_every`` steps through the
  real ``EventWriter`` (loss ``.item()``, lr, gamma, samples/s, data wait);
- ``wandb``: ``wandb.log`` of the same five numbers every ``log_every`` steps
  (``wandb.init(mode="offline")``, started once before the first round);
- ``tensorboard``: ``SummaryWriter.add_scalar`` of the same five numbers every ``log_every``
  steps.

Reported: per round, each variant's steps/s divided by the ``none`` block of the same round;
the median and spread of those ratios. Then microbenchmarks of the per-call costs that make
up segwatch's overhead (``EventWriter.emit`` of a step event, ``ControlReader.poll`` with
nothing new, ``Trainer.control_point``), of ``wandb.log`` / ``add_scalar`` x5 call time, and the
arithmetic: overhead per step = poll + emit / log_every, as a fraction of the measured step time.
The trainer's code is used as it is; nothing here changes its numerics.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, summary, tree_cpu_rss, write_json  # noqa: E402

VARIANTS = ("none", "segwatch", "wandb", "tensorboard")


def make_trainer(run_dir: Path, *, image_size: int, width: int, batch: int, n_batches: int, log_every: int):
    import torch

    from trainer.core.config import from_dict
    from trainer.dist import DistContext
    from trainer.build import build
    from trainer.rundir import open_run
    from trainer.train import Trainer

    cfg = from_dict({"name": "bench", "model": {"width": width},
                     "data": {"image_size": image_size, "synthetic_train": batch * n_batches, "synthetic_val": 4},
                     "training": {"batch_size": batch, "log_every": log_every, "epochs": 1000, "warmup_epochs": 0}},
                    source="bench")
    c = open_run(build(cfg, torch.device("cpu"), DistContext()), run_dir, None, ["bench"])
    t = Trainer(c)
    c.train_ds.set_epoch(1)
    batches = []
    for b in range(n_batches):
        items = [c.train_ds[b * batch + i] for i in range(batch)]
        batches.append((torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])))
    return t, batches


class Loggers:
    """The three loggers, each with the same five numbers per log call."""

    def __init__(self, tmp: Path, want: tuple[str, ...]):
        self.wandb_run = None
        self.tb = None
        self.errors: dict[str, str] = {}
        if "wandb" in want:
            try:
                os.environ.setdefault("WANDB_SILENT", "true")
                import wandb

                self.wandb_run = wandb.init(project="segwatch-bench", mode="offline", dir=str(tmp),
                                            settings=wandb.Settings(console="off", x_disable_stats=True) if _has_setting(wandb, "x_disable_stats") else wandb.Settings(console="off"))
            except Exception as e:  # noqa: BLE001 - not installed or cannot start: measured as missing
                self.errors["wandb"] = f"{type(e).__name__}: {e}"
        if "tensorboard" in want:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(tmp / "tb"))
            except Exception as e:  # noqa: BLE001
                self.errors["tensorboard"] = f"{type(e).__name__}: {e}"

    def available(self, v: str) -> bool:
        return v in ("none", "segwatch") or (v == "wandb" and self.wandb_run is not None) or (
            v == "tensorboard" and self.tb is not None)

    def log(self, variant: str, trainer, step: int, loss, lr: float, sps: float, wait: float) -> None:
        if variant == "segwatch":
            trainer.events.emit("step", epoch=1, step=step, loss=loss.item(), lr=lr, gamma=trainer.live["gamma"],
                                samples_per_s=round(sps, 2), data_wait=round(wait, 4))
        elif variant == "wandb":
            self.wandb_run.log({"loss": loss.item(), "lr": lr, "gamma": trainer.live["gamma"],
                                "samples_per_s": sps, "data_wait": wait}, step=step)
        elif variant == "tensorboard":
            w = self.tb
            w.add_scalar("loss", loss.item(), step)
            w.add_scalar("lr", lr, step)
            w.add_scalar("gamma", trainer.live["gamma"], step)
            w.add_scalar("samples_per_s", sps, step)
            w.add_scalar("data_wait", wait, step)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
        if self.tb is not None:
            self.tb.close()


def _has_setting(wandb, name: str) -> bool:
    try:
        return name in wandb.Settings.model_fields
    except Exception:  # noqa: BLE001
        return False


def block(trainer, batches, n: int, variant: str, loggers: Loggers, step0: int) -> tuple[float, float]:
    """``n`` training steps with the given logging; returns (wall time, CPU time of this process
    and its children: W&B's service process does its work there)."""
    import torch

    from trainer.metrics import FScoreMeter

    meter = FScoreMeter()
    log_every = trainer.cfg.training.log_every
    log_loss = torch.zeros(())
    log_n, log_t, log_samples = 0, time.perf_counter(), 0
    c0 = tree_cpu_rss(os.getpid())[0]
    t0 = time.perf_counter()
    for i in range(n):
        images, masks = batches[i % len(batches)]
        if variant == "segwatch":
            trainer.control_point()
        step = step0 + i
        lr = trainer.lr_for(step)
        loss, pred, ok = trainer.train_step(images, masks, lr)
        if ok:
            log_loss += loss
            log_n += 1
            meter.update(pred, masks)
        log_samples += images.shape[0]
        if variant != "none" and (step + 1) % log_every == 0:
            dt = time.perf_counter() - log_t
            loggers.log(variant, trainer, step + 1, log_loss / max(log_n, 1), lr, log_samples / max(dt, 1e-9), 0.0)
            log_loss.zero_()
            log_n, log_t, log_samples = 0, time.perf_counter(), 0
    wall = time.perf_counter() - t0
    if variant == "wandb":
        time.sleep(0.2)  # let the service process finish this block's records: its CPU counts
    elif variant == "tensorboard":
        loggers.tb.flush()  # the writer thread's work counts too
    return wall, tree_cpu_rss(os.getpid())[0] - c0


def micro(fn, n: int, reps: int = 7, settle=None) -> dict:
    """Per-call time of ``fn`` in microseconds: ``reps`` batches of ``n`` calls, median and spread;
    plus ``tree_cpu_us``: CPU time of this process and its children per call, after ``settle()``
    (W&B's service process and TensorBoard's writer thread do part of the work later)."""
    per = []
    c0 = tree_cpu_rss(os.getpid())[0]
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per.append((time.perf_counter() - t0) / n * 1e6)
    if settle:
        settle()
    out = summary(per)
    out["tree_cpu_us"] = (tree_cpu_rss(os.getpid())[0] - c0) / (reps * n) * 1e6
    return out


def run(rounds: int = 30, block_steps: int = 10, quick: bool = False, image_size: int = 64, width: int = 16,
        batch: int = 8, log_every: int = 10, variants: tuple[str, ...] = VARIANTS, threads: int = 1) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    if quick:  # CI: proves the harness runs; the peers are benchmark-only extras, not there
        rounds, block_steps, image_size, width, batch, log_every = 2, 4, 32, 8, 2, 2
        variants = ("none", "segwatch")
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-log-"))
    try:
        run_dir = tmp / "run"
        trainer, batches = make_trainer(run_dir, image_size=image_size, width=width, batch=batch,
                                        n_batches=4, log_every=log_every)
        loggers = Loggers(tmp, variants)
        active = [v for v in variants if loggers.available(v)]
        for v in active:  # warm-up: first calls allocate, compile kernels, open files
            block(trainer, batches, 2 if quick else min(block_steps, 2 * log_every), v, loggers, 0)
        times: dict[str, list[float]] = {v: [] for v in active}
        cpu_ms: dict[str, list[float]] = {v: [] for v in active}
        ratios: dict[str, list[float]] = {v: [] for v in active if v != "none"}
        cpu_ratios: dict[str, list[float]] = {v: [] for v in active if v != "none"}
        step = 1000
        for r in range(rounds):
            order = active[r % len(active):] + active[:r % len(active)]
            got = {}
            for v in order:
                got[v] = block(trainer, batches, block_steps, v, loggers, step)
                step += block_steps
                times[v].append(block_steps / got[v][0])
                cpu_ms[v].append(got[v][1] / block_steps * 1000)
            for v in ratios:
                ratios[v].append(got["none"][0] / got[v][0])
                cpu_ratios[v].append(got[v][1] / max(got["none"][1], 1e-9))
        step_s = statistics.median([1 / x for x in times["none"]])

        # --- microbenchmarks: the mechanism behind the ratio -------------------------------
        n = 100 if quick else 2000
        loss = torch.tensor(0.5)
        ev = trainer.events
        emit = micro(lambda: ev.emit("step", epoch=1, step=1, loss=loss.item(), lr=1e-3, gamma=2.0,
                                     samples_per_s=123.45, data_wait=0.0123), n)
        reader = trainer.c.steering.reader
        poll = micro(reader.poll, n)
        cpoint = micro(trainer.control_point, n)
        micro_res = {"emit_step_us": emit, "control_reader_poll_us": poll, "control_point_us": cpoint}
        if loggers.wandb_run is not None:
            wr = loggers.wandb_run
            micro_res["wandb_log_us"] = micro(lambda: wr.log({"loss": loss.item(), "lr": 1e-3, "gamma": 2.0,
                                                              "samples_per_s": 123.45, "data_wait": 0.0123}), n // 4,
                                              settle=lambda: time.sleep(3.0))
        if loggers.tb is not None:
            w = loggers.tb
            ctr = [0]

            def tb5():
                ctr[0] += 1
                for k in ("loss", "lr", "gamma", "samples_per_s", "data_wait"):
                    w.add_scalar(k, 0.5, ctr[0])
            micro_res["tensorboard_5_scalars_us"] = micro(tb5, n // 4, settle=w.flush)
        per_step_us = cpoint["median"] + emit["median"] / log_every
        # the same arithmetic for a fast (GPU-like) 20 ms step, from each logger's CPU per call
        fast = {"segwatch": (cpoint["tree_cpu_us"] + emit["tree_cpu_us"] / log_every) / 20e3}
        if "wandb_log_us" in micro_res:
            fast["wandb"] = micro_res["wandb_log_us"]["tree_cpu_us"] / log_every / 20e3
        if "tensorboard_5_scalars_us" in micro_res:
            fast["tensorboard"] = micro_res["tensorboard_5_scalars_us"]["tree_cpu_us"] / log_every / 20e3
        loggers.close()
        return {
            "setup": {"image_size": image_size, "width": width, "batch": batch, "log_every": log_every,
                      "block_steps": block_steps, "rounds": rounds, "torch_threads": torch.get_num_threads(),
                      "params": trainer.c.params},
            "variants": active, "missing": loggers.errors,
            "steps_per_s": {v: summary(x) for v, x in times.items()},
            "ratio_to_none": {v: summary(x) for v, x in ratios.items()},
            "cpu_ms_per_step": {v: summary(x) for v, x in cpu_ms.items()},
            "cpu_ratio_to_none": {v: summary(x) for v, x in cpu_ratios.items()},
            "step_ms_none_median": step_s * 1000,
            "micro": micro_res,
            "segwatch_per_step_us": per_step_us,
            "segwatch_overhead_fraction_computed": per_step_us / 1e6 / step_s,
            "computed_overhead_at_20ms_step": fast,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core box two OMP threads make step times swing "
                        "by 10x; what logging costs does not depend on it; 0 = torch's default)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    res = run(a.rounds, a.block, a.quick, a.image_size, a.width, a.batch, a.log_every, threads=a.threads)
    write_json(Path(a.out) / "logging_overhead.json", {"machine": machine_info(), **res})
    for v, s in res["ratio_to_none"].items():
        c = res["cpu_ratio_to_none"][v]
        print(f"{v}: steps/s ratio to no logging: median {s['median']:.4f} (p5 {s['p5']:.4f}, p95 {s['p95']:.4f}); "
              f"CPU per step ratio: median {c['median']:.4f} (p5 {c['p5']:.4f}, p95 {c['p95']:.4f})")
    m = res["micro"]
    print(f"step {res['step_ms_none_median']:.1f} ms; emit {m['emit_step_us']['median']:.1f} us, "
          f"poll {m['control_reader_poll_us']['median']:.1f} us, control_point {m['control_point_us']['median']:.1f} us"
          f" -> {res['segwatch_per_step_us']:.1f} us/step = {res['segwatch_overhead_fraction_computed'] * 100:.3f} %")
    for k in m:
        print(f"{k}: {m[k]['median']:.1f} us per call in the caller, {m[k]['tree_cpu_us']:.1f} us CPU in all")
    print("computed overhead at a 20 ms step:", {k: f"{v * 100:.3f} %" for k, v in res["computed_overhead_at_20ms_step"].items()})


if __name__ == "__main__":
    main()
