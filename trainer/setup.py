"""Everything a run needs before its first step: data, model, optimizer, loss, run directory,
control channel and, on resume, the restored state. Errors here are the user's (exit 2)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from trainer import alpha as alpha_mod
from trainer import checkpoint as ckpt
from trainer.core import live as live_mod
from trainer.core.config import Config, ConfigError, from_dict
from trainer.data import build_datasets, class_frequencies, class_weights_from_frequencies
from trainer.data.augment import Augment
from trainer.device import choose_precision, rank_seed
from trainer.dist import DistContext
from trainer.loaders import EpochBatches, Loaders, num_workers_for  # noqa: F401 - EpochBatches: re-exported
from trainer.losses import SegLoss
from trainer.model import DEFAULT_WIDTH, build_model, count_params, output_stride_for, set_dropout
from trainer.record import EventWriter, atomic_write_text, read_events, remove_stale_temps
from trainer.runfiles import UnsafeFile, describe, open_regular, write_small
from trainer.steer import Steering


O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def resolve_device(arg: str) -> torch.device:
    """The device for ``--device ARG`` (trainer.device.choose_device, without its note)."""
    from trainer.device import choose_device

    return choose_device(arg)[0]


@dataclass
class Components:
    cfg: Config
    run_dir: Path
    device: torch.device
    dist: DistContext
    model: torch.nn.Module
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: SegLoss
    augment: Augment
    train_ds: Any
    val_ds: Any
    data_desc: dict
    params: int
    steps_per_epoch: int
    amp: bool
    channels_last: bool
    amp_reason: str = ""
    events: EventWriter = None  # type: ignore[assignment]
    steering: Steering = None  # type: ignore[assignment]
    lock_fd: int | None = None  # trainer.lock, held while this process trains (rank 0)
    state: dict = field(default_factory=dict)
    _class_weights: torch.Tensor | None = None
    pending_augmentation: dict = field(default_factory=dict)
    num_workers: int = 0  # training.num_workers resolved (auto: loaders.num_workers_for)
    loaders: Loaders = None  # type: ignore[assignment]
    _frequencies: list | None = None

    def __post_init__(self) -> None:
        self.loaders = Loaders(self)

    def train_loader(self, epoch: int, start: int) -> DataLoader:
        """This epoch's batches from batch ``start`` on (trainer/loaders.py: one loader per run,
        persistent workers)."""
        self.train_ds.set_epoch(epoch)
        return self.loaders.train(epoch, start)

    def val_loader(self) -> DataLoader:
        return self.loaders.val()

    def close_loaders(self) -> None:
        self.loaders.close()

    def class_frequencies(self) -> list[float]:
        """Pixel share of each class over the training masks (cached in class_frequencies.json).
        Rank 0 computes (or reads the cache), the others receive its numbers: once, not once per
        rank, and a cold cache may take longer than the collective timeout."""
        if self._frequencies is None:
            cache = Path(self.cfg.data.cache_dir or self.run_dir) / "class_frequencies.json"
            self._frequencies = self.dist.share_from_main("class_frequencies",
                                                          lambda: class_frequencies(self.train_ds.source, str(cache)))
            if self.dist.enabled and self.cfg.debug.rank_log:
                _rank_log(self, {"class_frequencies": "computed" if self.dist.is_main else "from rank 0"})
        return self._frequencies

    def val_batches_max(self) -> int:
        """Validation batches of the rank with the most (rank 0: it gets ceil(n / world) images)."""
        per_rank = -(-len(self.val_ds) // self.dist.world_size)
        return -(-per_rank // self.cfg.training.batch_size)

    def class_weights(self) -> torch.Tensor:
        if self._class_weights is None:
            self._class_weights = torch.tensor(class_weights_from_frequencies(self.class_frequencies()),
                                               dtype=torch.float32, device=self.device)
        return self._class_weights

    def initial_live(self) -> dict[str, Any]:
        """The config's live values; ``focal_alpha: balanced`` becomes its per-class list here
        (trainer/alpha.py), so the loss, the record and every preset see numbers."""
        live = live_mod.live_from_config(self.cfg)
        if live.get("alpha") == alpha_mod.BALANCED:
            live["alpha"] = alpha_mod.balanced_alpha(self.class_frequencies())
        return live

    def alpha_source(self) -> str | None:
        a = self.cfg.loss.focal_alpha
        return None if a is None else "balanced" if a == alpha_mod.BALANCED else \
            "list" if isinstance(a, (list, tuple)) else "scalar"

    def apply_live(self, values: dict[str, Any]) -> None:
        """Push live values into the loss, model and optimizer; augmentation values wait for the
        next epoch (start_epoch_augmentation), so every batch of an epoch sees the same ones."""
        loss = self.loss_fn
        for k, v in values.items():
            if k in ("rotation", "scale_range", "hflip"):
                self.pending_augmentation[k] = tuple(v) if k == "scale_range" else v
            elif k in ("gamma", "alpha", "use_focal", "dice_weight"):
                setattr(loss, k, v)
            elif k == "use_class_weights":
                loss.use_class_weights = v
                if v:
                    loss.class_weights = self.class_weights()
            elif k == "dropout":
                set_dropout(self.raw_model, v)
            elif k == "weight_decay":
                for g in self.optimizer.param_groups:
                    if g.get("decay"):
                        g["weight_decay"] = v

    def start_epoch_augmentation(self) -> dict[str, Any]:
        """Apply the augmentation values set since the last epoch began (the loader's worker
        processes are forked per epoch, so they see them too); returns what changed."""
        changed = dict(self.pending_augmentation)
        for k, v in changed.items():
            setattr(self.augment, k, v)
        self.pending_augmentation.clear()
        return changed

    def resolved_config(self) -> dict:
        d = self.cfg.to_dict()
        for k, v in self.steering.live.items():
            sec, key = live_mod.LIVE_KEYS[k].config_key.split(".")
            d[sec][key] = v
        return d


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "decay": True},
            {"params": no_decay, "weight_decay": 0.0, "decay": False}]


def build(cfg: Config, device: torch.device, dist: DistContext) -> Components:
    """Data, model, loss, optimizer. Raises ConfigError / DataError before anything is written."""
    torch.manual_seed(cfg.seed)
    a = cfg.augmentation
    augment = Augment(rotation=a.rotation, scale_range=tuple(a.scale_range), hflip=a.hflip, color_jitter=a.color_jitter)
    d = cfg.data
    train_ds, val_ds, desc = build_datasets(root=d.root, format=d.format, image_size=d.image_size,
                                            synthetic_train=d.synthetic_train, synthetic_val=d.synthetic_val,
                                            seed=cfg.seed, augment=augment)
    d.image_size = desc["image_size"]  # unset -> the size chosen; config.yaml and checkpoints record it
    n = desc["train_count"]
    desc["class_weights"] = {  # loss.use_class_weights may also be switched on live: say where they come from
        "enabled": bool(cfg.loss.use_class_weights),
        "source": f"pixel frequencies of the {n} training masks at {d.image_size} px (inverse square root), "
                  f"cached in {Path(d.cache_dir) / 'class_frequencies.json' if d.cache_dir else 'the run directory'}"}
    t = cfg.training
    for ds in (train_ds, val_ds):  # before any loader worker forks: workers inherit the samples
        prefill = getattr(ds.source, "prefill", None)
        if prefill is not None:
            prefill()
    per_rank = len(train_ds) // dist.world_size
    steps = steps_per_epoch(cfg, len(train_ds), dist.world_size)
    if steps < 1:
        raise ConfigError(f"training.batch_size = {t.batch_size}: larger than the {per_rank} training images per process; "
                          f"allowed: at most {per_rank}")
    workers = num_workers_for(t.num_workers, dist.world_size)
    desc["loader_workers"] = workers
    stride = output_stride_for(cfg.model.output_stride, desc.get("image_size"))
    desc["output_stride"] = stride
    model = build_model(attention=cfg.model.attention, width=cfg.model.width or DEFAULT_WIDTH, dropout=t.dropout,
                        output_stride=stride)
    params = count_params(model)
    if params > cfg.model.max_params:
        raise ConfigError(f"model.max_params = {cfg.model.max_params}: the model has {params:,} parameters "
                          f"(attention={cfg.model.attention}, width={cfg.model.width or 'default'}); shrink model.width")
    amp, amp_reason = choose_precision(t.amp, device)
    channels_last = t.channels_last == "on" or (t.channels_last == "auto" and device.type == "cuda")
    if device.type == "cuda":  # fixed-size training inputs: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
    if dist.enabled:  # dropout differs between ranks (the data order is shared: EpochBatches)
        torch.manual_seed(rank_seed(cfg.seed, dist.rank))
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw = model
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        model = torch.compile(model)
    optimizer = torch.optim.AdamW(_param_groups(raw, t.weight_decay), lr=t.learning_rate,
                                  fused=device.type == "cuda")
    loss_fn = SegLoss(use_focal=cfg.loss.use_focal, gamma=cfg.loss.focal_gamma, alpha=cfg.loss.focal_alpha,
                      dice_weight=cfg.loss.dice_weight, ignore_index=cfg.loss.ignore_index)
    return Components(cfg=cfg, run_dir=Path("."), device=device, dist=dist, model=model, raw_model=raw,
                      optimizer=optimizer, loss_fn=loss_fn, augment=augment, train_ds=train_ds, val_ds=val_ds,
                      data_desc=desc, params=params, steps_per_epoch=steps, amp=amp, channels_last=channels_last,
                      amp_reason=amp_reason, num_workers=workers)


def steps_per_epoch(cfg: Config, n_train: int, world_size: int) -> int:
    """Optimizer steps per epoch: every rank takes the same number of full batches."""
    steps = n_train // world_size // cfg.training.batch_size
    if cfg.debug.max_steps_per_epoch:
        steps = min(steps, cfg.debug.max_steps_per_epoch)
    return steps


def saved_world_size(run_dir: Path, state: dict) -> int:
    """The process count a checkpoint was trained with (older checkpoints: meta.json's)."""
    ws = state.get("world_size")
    if isinstance(ws, int) and ws >= 1:
        return ws
    try:
        ws = json.loads((run_dir / "meta.json").read_text()).get("world_size")
    except (OSError, ValueError, AttributeError):
        ws = None
    return ws if isinstance(ws, int) and ws >= 1 else 1


def reshape_state(c: Components, state: dict, saved_world: int) -> str:
    """--allow-reshape: rescale the step counter of a run trained on ``saved_world`` processes to
    this launch's steps per epoch, so the LR schedule (a function of the step) continues at the
    same point of the run. Returns the warning to show."""
    old_spe = steps_per_epoch(c.cfg, len(c.train_ds), saved_world)
    new_spe = c.steps_per_epoch
    epoch, in_epoch = int(state.get("epoch", 0)), int(state.get("step_in_epoch", 0))
    new_in = min(new_spe, round(in_epoch * new_spe / max(old_spe, 1)))
    old_step = int(state.get("step", 0))
    state["step"], state["step_in_epoch"] = epoch * new_spe + new_in, new_in
    return (f"resumed on {c.dist.world_size} process(es), trained on {saved_world} (--allow-reshape): "
            f"{old_spe} -> {new_spe} steps per epoch, step {old_step} -> {state['step']}, another data shard per rank")


def _rank_log(c: "Components", record: dict) -> None:
    """debug.rank_log: one line in <run>/ranks/rank<N>.jsonl (proves what each rank did)."""
    d = c.run_dir / "ranks"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"rank{c.dist.rank}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def new_run_dir(runs_dir: Path, name: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    path, n = runs_dir / name, 2
    while path.exists():
        path, n = runs_dir / f"{name}-{n}", n + 1
    return path


def open_record(c: Components, run_dir: Path, resume: dict | None, argv: list[str]) -> None:
    """Create or reopen the run directory, the event writer and the control channel."""
    c.run_dir = run_dir
    main = c.dist.is_main
    if main:
        # before anything is written: a link, FIFO or directory where the record goes, or a
        # link where the checkpoints go, is refused (exit 2) rather than followed
        why = describe(run_dir / "events.jsonl")
        ck = run_dir / "checkpoints"
        if not why and os.path.lexists(ck) and (ck.is_symlink() or not ck.is_dir()):
            why = f"{ck} is {'a symbolic link' if ck.is_symlink() else 'not a directory'}, not the run's checkpoints folder"
        if why:
            raise UnsafeFile(errno.EINVAL, f"{why}; nothing was changed")
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        c.lock_fd = lock_run_dir(run_dir)
        stale = remove_stale_temps(run_dir / "checkpoints") + remove_stale_temps(run_dir)
        if stale:
            out(f"removed {len(stale)} temp file(s) of writes a killed trainer left unfinished: {', '.join(stale)}")
        if resume is None:
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(c.cfg.to_dict(), sort_keys=False))
        try:  # create it (0600) unless something is there; never through a link
            os.close(os.open(run_dir / "control.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o600))
        except FileExistsError:
            pass  # a FIFO, link or directory there is reported by the reader (control_refused)
        write_small(run_dir / "trainer.pid", f"{os.getpid()}\n")
    c.events = EventWriter(run_dir / "events.jsonl", enabled=main)
    c.steering = Steering(run_dir / "control.jsonl", c.events, c.initial_live(), c.apply_live,
                          is_main=main, broadcast=c.dist.broadcast_objects if c.dist.enabled else None)
    if resume is not None:
        c.steering.live.update(resume["live"])
        c.apply_live(resume["live"])
        plan = None
        if main:  # only rank 0 reads control.jsonl and the record; every rank applies the same plan
            c.steering.reader.seek(resume.get("control"))
            skipped: list[int] = []
            plan = c.steering.plan_restore(resume.get("answered", []), read_events(run_dir / "events.jsonl", skipped),
                                           epoch=resume["epoch"] + 1)
            if skipped[0]:  # said in the record, not passed over (a torn last line counts too)
                c.steering.deferred.append({"code": "unreadable_events", "message": f"{skipped[0]} line(s) of "
                                            "events.jsonl are not events and were skipped when it was read on resume"})
        if c.dist.enabled:
            plan = c.dist.broadcast_objects([plan])[0]
        c.steering.apply_restore(plan)
    else:
        c.apply_live(c.steering.live)
    if main:
        meta = {
            "name": c.cfg.name, "params": c.params, "device": str(c.device), "world_size": c.dist.world_size,
            "data": c.data_desc, "synthetic": bool(c.data_desc.get("synthetic")),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "segwatch": _version()},
            "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": argv,
            "resumed_from_epoch": resume["epoch"] if resume else None,
        }
        atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))


def lock_run_dir(run_dir: Path) -> int:
    """Hold ``run_dir/trainer.lock`` (flock) for the life of this process: one trainer per run
    directory, so two resumes of the same run cannot interleave their records and checkpoints."""
    import fcntl

    path = run_dir / "trainer.lock"
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"{run_dir}: another trainer (pid {holder}) is writing this run; "
                          "attach to it (segwatch attach) or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("segwatch")
    except Exception:  # noqa: BLE001 - running from a source tree without an install
        return "source"


def load_resume(run_dir: Path, device: torch.device) -> tuple[Config, dict]:
    """Config and state of a run to resume; the last checkpoint must exist and be complete."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"--resume {run_dir}: no checkpoint at {path} (the run never finished an epoch)")
    try:
        fd = open_regular(path)  # not through a link, not a FIFO
    except OSError as e:
        raise ConfigError(f"--resume {run_dir}: {e.strerror or e}; nothing was run") from None
    try:
        # always onto the CPU: load_state_dict copies weights and optimizer state to the model's
        # device, and the RNG states must stay CPU tensors (torch.set_rng_state refuses others)
        with os.fdopen(fd, "rb") as f:
            state = ckpt.load(f, map_location="cpu")
    except pickle.UnpicklingError:
        raise ConfigError(f"--resume {run_dir}: refused {path}: it holds pickled objects that torch.load(weights_only=True) "
                          "does not load (not a checkpoint of this trainer, or tampered with); nothing was run") from None
    except Exception as e:  # noqa: BLE001 - torn or foreign file: name it, exit 2
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"--resume {run_dir}: cannot load {path}: {type(e).__name__}: {first}") from None
    missing = [k for k in ("config", "model", "optimizer", "epoch", "rng", "live") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(f"--resume {run_dir}: {path} is not a checkpoint of this trainer (missing: {', '.join(missing)})")
    cfg = from_dict(state["config"], source=f"{path} (config)")
    return cfg, state


def restore_state(c: Components, state: dict) -> None:
    c.raw_model.load_state_dict(state["model"])
    c.optimizer.load_state_dict(state["optimizer"])
    fused = c.device.type == "cuda"  # the device it runs on now, not the one the checkpoint came from
    for g in c.optimizer.param_groups:
        g["fused"] = fused
        if fused:
            g["foreach"] = None
    ckpt.set_rng_state(ckpt.rank_rng(state, c.dist.rank), c.device)
    if c.dist.rank >= len(state.get("rng_ranks") or [None]):
        # no RNG state of its own (a resume onto more ranks than saved one): its own stream, not rank 0's
        torch.manual_seed(rank_seed(c.cfg.seed, c.dist.rank) + int(state.get("step", 0)))
    c.state = state


def out(msg: str) -> None:
    print(msg, flush=True, file=sys.stdout)
