"""Everything a run trains with, built before anything is written: data, model, loss, optimizer
(:class:`Parts`), and how a live value reaches them (:data:`LIVE_APPLY`, one entry per live key of
``trainer.core.live.LIVE_KEYS``). Errors here are the user's (exit 2). The run directory, the
record and the control channel are opened afterwards (trainer/rundir.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from trainer import alpha as alpha_mod
from trainer import checkpoint as ckpt
from trainer.core import live as live_mod
from trainer.core.config import Config, ConfigError
from trainer.data import build_datasets, class_frequencies, class_weights_from_frequencies
from trainer.data.augment import Augment
from trainer.device import choose_precision, rank_seed
from trainer.dist import DistContext
from trainer.loaders import Loaders, num_workers_for
from trainer.losses import SegLoss
from trainer.model import DEFAULT_WIDTH, build_model, count_params, logit_scale_for, output_stride_for, set_dropout


def resolve_device(arg: str) -> torch.device:
    """The device for ``--device ARG`` (trainer.device.choose_device, without its note)."""
    from trainer.device import choose_device

    return choose_device(arg)[0]


@dataclass(kw_only=True)
class Parts:
    """What :func:`build` makes: complete before any file of the run exists."""

    cfg: Config
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
    num_workers: int = 0  # training.num_workers resolved (auto: loaders.num_workers_for)
    pending_augmentation: dict = field(default_factory=dict)
    _class_weights: torch.Tensor | None = None
    _frequencies: list | None = None
    loaders: Loaders = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self)

    def home(self) -> Path:
        """Where the run's own files go: the run directory once it is open (rundir.Components);
        the current directory for parts used on their own (tests, benches)."""
        return Path(".")

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
            cache = Path(self.cfg.data.cache_dir or self.home()) / "class_frequencies.json"
            self._frequencies = self.dist.share_from_main("class_frequencies",
                                                          lambda: class_frequencies(self.train_ds.source, str(cache)))
            if self.dist.enabled and self.cfg.debug.rank_log:
                self.rank_log({"class_frequencies": "computed" if self.dist.is_main else "from rank 0"})
        return self._frequencies

    def rank_log(self, record: dict) -> None:
        """debug.rank_log: one line in <run>/ranks/rank<N>.jsonl (proves what each rank did)."""
        d = self.home() / "ranks"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"rank{self.dist.rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

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
        """Push live values into the loss, model and optimizer (:data:`LIVE_APPLY`); augmentation
        values wait for the next epoch (start_epoch_augmentation), so every batch of an epoch sees
        the same ones."""
        for k, v in values.items():
            apply = LIVE_APPLY.get(k)
            if apply is not None:  # a key this trainer does not know (an older checkpoint's): nothing to push
                apply(self, v)

    def start_epoch_augmentation(self) -> dict[str, Any]:
        """Apply the augmentation values set since the last epoch began (the loader's worker
        processes are forked per epoch, so they see them too); returns what changed."""
        changed = dict(self.pending_augmentation)
        for k, v in changed.items():
            setattr(self.augment, k, v)
        self.pending_augmentation.clear()
        return changed


# --- how each live key reaches what it changes ---------------------------------------------------

def _loss_knob(name: str) -> Callable[[Parts, Any], None]:
    def apply(p: Parts, v: Any) -> None:
        setattr(p.loss_fn, name, v)
    return apply


def _next_epoch(name: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[Parts, Any], None]:
    def apply(p: Parts, v: Any) -> None:
        p.pending_augmentation[name] = convert(v)
    return apply


def _class_weights(p: Parts, v: Any) -> None:
    p.loss_fn.use_class_weights = v
    if v:
        p.loss_fn.class_weights = p.class_weights()


def _dropout(p: Parts, v: Any) -> None:
    set_dropout(p.raw_model, v)


def _weight_decay(p: Parts, v: Any) -> None:
    for g in p.optimizer.param_groups:
        if g.get("decay"):
            g["weight_decay"] = v


def _read_by_the_trainer(p: Parts, v: Any) -> None:
    """Read from ``Steering.live`` by the training loop itself (the LR schedule, the epoch
    count, clipping, early stopping): nothing to push."""


_APPLY_BY_KEY: dict[str, Callable[[Parts, Any], None]] = {
    "gamma": _loss_knob("gamma"), "alpha": _loss_knob("alpha"), "use_focal": _loss_knob("use_focal"),
    "dice_weight": _loss_knob("dice_weight"), "use_class_weights": _class_weights,
    "dropout": _dropout, "weight_decay": _weight_decay,
    "rotation": _next_epoch("rotation"), "scale_range": _next_epoch("scale_range", tuple),
    "hflip": _next_epoch("hflip"),
}

#: live key -> how its value reaches the model, loss, optimizer or augmentation; one entry per key
#: of the shared core's table (tests/trainer/test_live_apply.py checks they are the same keys)
LIVE_APPLY: dict[str, Callable[[Parts, Any], None]] = {
    k: _APPLY_BY_KEY.get(k, _read_by_the_trainer) for k in live_mod.LIVE_KEYS
}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "decay": True},
            {"params": no_decay, "weight_decay": 0.0, "decay": False}]


def build(cfg: Config, device: torch.device, dist: DistContext) -> Parts:
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
    gain = logit_scale_for(cfg.model.logit_scale, desc.get("image_size"))
    desc["logit_scale"] = gain
    model = build_model(attention=cfg.model.attention, width=cfg.model.width or DEFAULT_WIDTH, dropout=t.dropout,
                        output_stride=stride, logit_scale=gain)
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
    return Parts(cfg=cfg, device=device, dist=dist, model=model, raw_model=raw,
                      optimizer=optimizer, loss_fn=loss_fn, augment=augment, train_ds=train_ds, val_ds=val_ds,
                      data_desc=desc, params=params, steps_per_epoch=steps, amp=amp, channels_last=channels_last,
                      amp_reason=amp_reason, num_workers=workers)


def steps_per_epoch(cfg: Config, n_train: int, world_size: int) -> int:
    """Optimizer steps per epoch: every rank takes the same number of full batches."""
    steps = n_train // world_size // cfg.training.batch_size
    if cfg.debug.max_steps_per_epoch:
        steps = min(steps, cfg.debug.max_steps_per_epoch)
    return steps


def reshape_state(c: Parts, state: dict, saved_world: int) -> str:
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


def restore_state(c: Parts, state: dict) -> None:
    """Weights, optimizer and RNG state of a checkpoint (the run directory opens afterwards)."""
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
