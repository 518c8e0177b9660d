"""``python -m trainer``: headless training with a run record. Exit 0 done, 2 config/data
error (before any training starts), 1 crash."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
from pathlib import Path

from trainer.core.config import ConfigError, all_keys, load_config, parse_override
from trainer.data.errors import DataError
from trainer.runfiles import existing_run, open_regular


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer", description="Train a face-parsing model and write a run directory.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="YAML config (see configs/)")
    src.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set loss.focal_gamma=1.5 (repeatable)")
    p.add_argument("--run-dir", help="where to write the run (default: RUNS_DIR/<name>)")
    p.add_argument("--runs-dir", default=os.environ.get("SEGWATCH_RUNS", "runs"), help="parent folder of new runs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--nproc-per-node", type=int, default=None,
                   help="processes (GPUs) for DDP; overrides training.nproc_per_node (--resume: the run's own count)")
    p.add_argument("--allow-reshape", action="store_true",
                   help="--resume on another process count than the run was trained with (e.g. fewer GPUs); "
                        "the step counter is rescaled to the new steps per epoch")
    return p.parse_args(argv)


def _relaunch_with_torchrun(nproc: int, argv: list[str]) -> None:
    """Replace this process by torchrun running the same command on nproc workers."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "trainer", *argv]
    if os.path.exists("/sys/class/net/lo"):  # one node: the ranks' gloo sockets on loopback only
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.execv(sys.executable, args)


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    try:
        if args.config:
            cfg = load_config(args.config, args.overrides)
            if args.run_dir:
                refuse_existing_run(Path(args.run_dir), cfg)
        else:
            cfg = None
            args.live_sets = resume_sets(args.resume, args.overrides)
        nproc = args.nproc_per_node or (cfg.training.nproc_per_node if cfg else 1)
        if "WORLD_SIZE" not in os.environ:  # the launcher: settle the process count before torchrun
            nproc = _launch_nproc(args, nproc)
        if nproc > 1 and "WORLD_SIZE" not in os.environ:
            if args.config and not args.run_dir:  # every worker must agree on the run directory
                from trainer.rundir import new_run_dir
                raw_argv += ["--run-dir", str(new_run_dir(Path(args.runs_dir), cfg.name))]
            _relaunch_with_torchrun(nproc, raw_argv)
        return _run(args, cfg, raw_argv)
    except (ConfigError, DataError) as e:
        msg = str(e).splitlines()[0] if not isinstance(e, DataError) else str(e)
        print(f"segwatch trainer: error: {msg}", file=sys.stderr)
        return 2


def _launch_nproc(args: argparse.Namespace, nproc: int) -> int:
    """The number of processes to start, checked before torchrun: a resume keeps the run's own
    count (the checkpoint's world_size) unless --allow-reshape; never more CUDA processes than
    visible GPUs ("invalid device ordinal" in every rank otherwise)."""
    from trainer.build import resolve_device
    from trainer.rundir import load_resume, saved_world_size

    device = resolve_device(args.device)
    if args.resume:
        _, state = load_resume(Path(args.resume), device)
        saved = saved_world_size(Path(args.resume), state)
        if args.nproc_per_node and args.nproc_per_node != saved and not args.allow_reshape:
            raise ConfigError(f"--resume {args.resume}: the run was trained on {saved} process(es), --nproc-per-node is "
                              f"{args.nproc_per_node}; add --allow-reshape to continue on {args.nproc_per_node} "
                              "(the step counter is rescaled to the new steps per epoch)")
        nproc = args.nproc_per_node or saved
    if device.type == "cuda" and nproc > 1:
        import torch

        visible = torch.cuda.device_count()
        if nproc > visible:
            if args.resume and args.allow_reshape:
                return max(1, visible)
            if args.resume:
                raise ConfigError(f"--resume {args.resume}: the run was trained on {nproc} processes, one GPU each, but "
                                  f"{visible} GPU(s) are visible; add --allow-reshape to continue on {visible}")
            raise ConfigError(f"--nproc-per-node asks for {nproc} processes, one GPU each, but {visible} GPU(s) are visible; "
                              "lower --nproc-per-node / training.nproc_per_node, or make more GPUs visible (CUDA_VISIBLE_DEVICES)")
    return nproc


def refuse_existing_run(run_dir: Path, cfg) -> None:
    """``--config ... --run-dir DIR`` never overwrites a run: ConfigError (exit 2, nothing
    changed) if DIR holds one. The one exception is a restart of the very same run that never
    wrote a checkpoint (a SLURM job requeued before its first epoch ended starts again with the
    same arguments): same config.yaml byte for byte, no checkpoint to lose."""
    found = existing_run(run_dir)
    if not found or _same_run_without_checkpoint(run_dir, cfg):
        return
    raise ConfigError(f"--run-dir {run_dir}: it already holds a run ({', '.join(found)}); continue it with "
                      f"--resume {run_dir}, or give another directory (nothing was changed)")


def _same_run_without_checkpoint(run_dir: Path, cfg) -> bool:
    import yaml

    if any(os.path.lexists(run_dir / "checkpoints" / k) for k in ("last.pt", "best.pt")):
        return False
    try:
        fd = open_regular(run_dir / "config.yaml", max_bytes=1 << 20)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        mine = f.read()
    return mine == yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode("utf-8")


def resume_sets(run_dir: str, overrides: list[str]) -> dict:
    """``--resume DIR --set KEY=VALUE``: live settings only (by config key or live name), applied
    as a recorded adjustment when the run continues; any other key is refused (exit 2), never
    ignored. Values are checked against the checkpoint once it is loaded (:func:`_check_sets`)."""
    from trainer.core import live as live_mod

    values = {}
    for item in overrides:
        path, value = parse_override(item)
        key = ".".join(path)
        name = live_mod.live_name_for(key)
        if name is None:
            what = ("is not a live setting: it is fixed for the life of a run; start a new run to change it"
                    if key in all_keys() else "is not a config key")
            live = ", ".join(k.config_key for k in live_mod.LIVE_KEYS.values())
            raise ConfigError(f"--resume {run_dir} --set {item}: '{key}' {what} (allowed on resume: {live})")
        values[name] = value
    return values


def _check_sets(args: argparse.Namespace, state: dict) -> dict:
    from trainer.core import live as live_mod

    values = getattr(args, "live_sets", {})
    if not values:
        return {}
    clean, reason = live_mod.validate(values, state["live"], int(state["epoch"]) + 1)
    if reason:
        raise ConfigError(f"--resume {args.resume} --set: {reason} (nothing was changed)")
    return clean


def _run(args: argparse.Namespace, cfg, argv: list[str]) -> int:
    import torch  # noqa: F401 - heavy import after the cheap config checks

    from trainer.datainfo import data_line
    from trainer.device import choose_device, gpu_inventory
    from trainer.alpha import describe as describe_alpha
    from trainer.core.classes import NUM_CLASSES
    from trainer.dist import init_distributed
    from trainer.build import build, reshape_state, restore_state
    from trainer.rundir import load_resume, new_run_dir, open_run, out, saved_world_size
    from trainer.train import Trainer

    device, device_note = choose_device(args.device)
    resume_state, live_sets = None, {}
    if args.resume:  # the checkpoint's config says how long a collective may wait
        run_dir = Path(args.resume)
        cfg, resume_state = load_resume(run_dir, device)
        live_sets = _check_sets(args, resume_state)
    dist = init_distributed(device, timeout_s=cfg.training.dist_timeout)
    if dist.enabled and device.type == "cuda":
        import torch as _t
        device = _t.device("cuda", dist.local_rank)
    parts = build(cfg, device, dist)  # validates data and model size: nothing written yet
    reshaped = None
    if resume_state is not None:
        saved = saved_world_size(run_dir, resume_state)
        if saved != dist.world_size:
            if not args.allow_reshape:
                raise ConfigError(f"--resume {run_dir}: the run was trained on {saved} process(es), this launch has "
                                  f"{dist.world_size}; add --allow-reshape to continue on {dist.world_size}")
            reshaped = reshape_state(parts, resume_state, saved)
    created = False
    if not args.resume:
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(Path(args.runs_dir), cfg.name)
        created = not run_dir.exists()
    if resume_state is not None:
        restore_state(parts, resume_state)
    try:
        comp = open_run(parts, run_dir, resume_state, argv)
    except OSError as e:
        if created and dist.is_main:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise ConfigError(f"run directory {run_dir}: {e.strerror or e}") from None
    trainer = Trainer(comp)
    ev = comp.events
    if dist.is_main:
        desc = comp.data_desc
        alpha_info = describe_alpha(trainer.live["alpha"], use_focal=bool(trainer.live["use_focal"]),
                                    source=comp.alpha_source(), num_classes=NUM_CLASSES)
        ev.emit("start", name=cfg.name, run_dir=str(run_dir), pid=os.getpid(), device=str(device),
                resumed=resume_state is not None, resume_epoch=trainer.epoch, epochs=trainer.live["epochs"],
                steps_per_epoch=comp.steps_per_epoch, batch_size=cfg.training.batch_size, params=comp.params,
                synthetic=bool(desc.get("synthetic")), data=desc, live=dict(trainer.live), world_size=dist.world_size,
                precision="bf16" if comp.amp else "fp32", precision_reason=comp.amp_reason,
                channels_last=comp.channels_last, alpha_info=alpha_info,
                **({"attempt": os.environ["SEGWATCH_ATTEMPT"]} if os.environ.get("SEGWATCH_ATTEMPT") else {}),
                gpus=gpu_inventory(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if dist.enabled else 1),
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), device_note=device_note)
        if device_note:
            ev.emit("warning", code="device_fallback", message=device_note, epoch=trainer.epoch, step=trainer.step)
            out(f"!! {device_note}")
        if reshaped:
            ev.emit("warning", code="reshaped", epoch=trainer.epoch, step=trainer.step, message=reshaped)
            out(f"!! {reshaped}")
        if alpha_info["note"]:
            ev.emit("warning", code="alpha_background", message=alpha_info["note"], epoch=trainer.epoch, step=trainer.step)
            out(f"!! {alpha_info['note']}")
        if desc.get("synthetic"):
            msg = ("training on the BUILT-IN SYNTHETIC face-parsing data (data.root is unset): "
                   "scores say nothing about the real task")
            ev.emit("warning", code="synthetic_data", message=msg, epoch=trainer.epoch, step=trainer.step)
            out(f"!! {msg}")
        else:
            out(f"data: {data_line(desc)}")
        for w in comp.steering.take_deferred():  # replayed records that failed validation
            ev.emit("warning", epoch=trainer.epoch, step=trainer.step, **w)
    if resume_state is not None and live_sets:  # every rank applies them; rank 0 records the ack
        comp.steering.adjust_at_start(live_sets, trainer.epoch + 1, trainer.step, source="resume --set")
    if dist.is_main:
        out(f"run {cfg.name}: {run_dir} | {comp.params:,} params | device {device} | "
            f"{comp.steps_per_epoch} steps/epoch | epochs {trainer.epoch + 1}..{trainer.live['epochs']}")
    reason, error = "crashed", None
    try:
        trainer.printer = out if dist.is_main else None
        reason = trainer.train()
        return 0
    except BaseException as e:  # noqa: BLE001 - recorded as the crash, then re-raised as exit 1
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        return 1
    finally:
        comp.close_loaders()  # persistent loader workers: before the end is recorded and the process exits
        if dist.is_main:
            try:
                validated = trainer.best_epoch >= 1  # before any validation there is no best (null)
                ev.emit("end", reason=reason, epoch=trainer.epoch,
                        best_val_f=trainer.best_val_f if validated else None,
                        best_epoch=trainer.best_epoch if validated else None, **({"error": error} if error else {}))
            except OSError as e:  # e.g. the disk is full: say so, still exit with the run's code
                print(f"segwatch trainer: could not record the end of the run: {e}", file=sys.stderr)
            ev.close()
            try:
                (run_dir / "trainer.pid").unlink()
            except FileNotFoundError:
                pass
        dist.close()
