"""Typed run configuration: YAML in, validated dataclasses out.

Pure Python (no torch), so the app can validate a config before it starts a trainer.
Every error is a :class:`ConfigError` whose one-line message names the file, the dotted key,
the value and what is allowed. The YAML keys are the plan's own (``loss.focal_gamma``,
``training.learning_rate``...).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from trainer.core.classes import NUM_CLASSES
from trainer.core.coerce import ConfigError
from trainer.core.coerce import coerce as _coerce
from trainer.core.safe_yaml import check_size, read_yaml_mapping
from trainer.core.safe_yaml import show as _show
from trainer.core.safe_yaml import show_key as _key

PARAM_CAP = 1_821_085  # the mini challenge's limit on trainable parameters (domain.md)


# --- field constraints -------------------------------------------------------------------


def _finite(v: float) -> bool:
    try:
        return isinstance(v, (int, float)) and math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def _name_ok(v: str) -> bool:
    return v not in ("", ".", "..") and "/" not in v and v.strip() == v and v.isprintable() and len(v) <= 200


def check(pred: Callable[[Any], bool], allowed: str) -> dict:
    return {"check": pred, "allowed": allowed}


def between(lo: float, hi: float | None, allowed: str, lo_open: bool = False, hi_open: bool = False) -> dict:
    """A number in [lo, hi] (an open end excluded; hi None: no upper bound). The bounds are kept in the
    metadata: trainer.core.live's ranges and app.health.schema's preset clamps are read from here."""
    def pred(v: Any) -> bool:
        return (lo < v if lo_open else lo <= v) and (hi is None or (v < hi if hi_open else v <= hi))
    return {"check": pred, "allowed": allowed, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}


def _alpha_ok(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _finite(v) and 0.0 <= v <= 1.0
    if isinstance(v, list):
        return len(v) == NUM_CLASSES and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and _finite(x) and 0 <= x <= 1
            for x in v
        )
    return False


def _scale_ok(v: Any) -> bool:
    return (
        isinstance(v, (list, tuple))
        and len(v) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and _finite(x) for x in v)
        and 0 < v[0] <= v[1] <= 4
    )


ALPHA_ALLOWED = f"a number in [0, 1] or a list of {NUM_CLASSES} numbers in [0, 1]"
# the config (not a live command) also takes 'balanced': trainer/alpha.py, docs/control.md
CONFIG_ALPHA_ALLOWED = (f"a number in [0, 1] (kornia: alpha for the face parts, 1 - alpha for background), "
                        f"a list of {NUM_CLASSES} numbers in [0, 1], or 'balanced' (per-class min(1, k/sqrt(f_c)) "
                        f"from the training set's pixel frequencies f_c, see docs/control.md)")


def _config_alpha_ok(v: Any) -> bool:
    return v == "balanced" or _alpha_ok(v)
SCALE_ALLOWED = "[lo, hi] with 0 < lo <= hi <= 4"


@dataclass
class ModelConfig:
    attention: str = field(default="lmsa", metadata=check(lambda v: v in ("none", "lmsa"), "none | lmsa"))
    width: int = field(default=0, metadata=check(lambda v: v == 0 or 8 <= v <= 256, "0 (the model's default) or 8..256"))
    # "auto": 2 for training images below 256 px (the built-in synthetic data), else 4 (trainer/model.py)
    output_stride: Any = field(default="auto", metadata=check(lambda v: v in ("auto", 2, 4) and not isinstance(v, (bool, float)),
                                                              "auto (2 below 256 px, else 4) | 2 | 4"))
    # "auto": 8 for training images below 256 px (the built-in synthetic data), else 1 (trainer/model.py)
    logit_scale: Any = field(default="auto", metadata=check(
        lambda v: v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100),
        "auto (8 below 256 px, else 1) | a number in (0, 100]"))
    max_params: int = field(default=PARAM_CAP, metadata=check(lambda v: 0 < v <= 10**10, "an integer in 1..10^10"))


@dataclass
class LossConfig:
    use_focal: bool = False
    focal_alpha: Any = field(default=0.25, metadata=check(_config_alpha_ok, CONFIG_ALPHA_ALLOWED))
    focal_gamma: float = field(default=2.0, metadata=between(0, 10, "a number in [0, 10]"))
    dice_weight: float = field(default=1.0, metadata=between(0, 100, "a number in [0, 100]"))
    use_class_weights: bool = False
    ignore_index: int = field(default=255, metadata=check(lambda v: NUM_CLASSES <= v <= 255, f"an integer in {NUM_CLASSES}..255"))


@dataclass
class TrainingConfig:
    learning_rate: float = field(default=5e-4, metadata=between(0, 1, "a number in (0, 1]", lo_open=True))
    epochs: int = field(default=250, metadata=between(1, 100_000, "an integer in 1..100000"))
    warmup_epochs: int = field(default=10, metadata=between(0, None, "an integer >= 0 and < training.epochs"))
    batch_size: int = field(default=16, metadata=check(lambda v: 1 <= v <= 4096, "an integer in 1..4096"))
    dropout: float = field(default=0.15, metadata=between(0, 1, "a number in [0, 1)", hi_open=True))
    weight_decay: float = field(default=1e-4, metadata=between(0, 1, "a number in [0, 1]"))
    grad_clip: float = field(default=1.0, metadata=between(0, 1e6, "a number in [0, 1e6] (0 = off)"))
    patience: int = field(default=0, metadata=between(0, 100_000, "an integer in 0..100000 (0 = off)"))
    min_lr_ratio: float = field(default=0.01, metadata=check(lambda v: 0 <= v <= 1, "a number in [0, 1]"))
    # "auto": one less than this process's share of the CPUs, at most 8 (trainer/loaders.py: num_workers_for)
    num_workers: Any = field(default="auto", metadata=check(lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 64),
                                                            "auto (CPUs per process - 1, at most 8) or an integer in 0..64"))
    nproc_per_node: int = field(default=1, metadata=check(lambda v: 1 <= v <= 64, "an integer in 1..64"))
    # DDP: how long a collective waits for a rank that stopped responding before the run crashes
    dist_timeout: float = field(default=120.0, metadata=check(lambda v: 5 <= v <= 86_400, "seconds in [5, 86400]"))
    log_every: int = field(default=10, metadata=check(lambda v: 1 <= v <= 10**9, "an integer in 1..10^9"))
    # YAML 1.1 reads on/off (unquoted) as booleans: they are accepted (amp: on = auto)
    amp: str = field(default="auto", metadata={**check(lambda v: v in ("auto", "bf16", "off"), "auto | bf16 | off (on = auto)"),
                                               "bool_words": ("off", "auto")})
    channels_last: str = field(default="auto", metadata={**check(lambda v: v in ("auto", "on", "off"), "auto | on | off"),
                                                         "bool_words": ("off", "on")})
    compile: bool = False
    eval_every: int = field(default=1, metadata=check(lambda v: 1 <= v <= 100_000, "an integer in 1..100000"))


@dataclass
class DataConfig:
    root: Any = field(default=None, metadata=check(lambda v: v is None or (isinstance(v, str) and v != ""), "null (built-in synthetic data) or a folder path"))
    format: str = field(default="auto", metadata=check(lambda v: v in ("auto", "mini", "celebamask"), "auto | mini | celebamask"))
    # None: real data trains at its masks' own size (512 for the challenge), synthetic at its default
    image_size: Any = field(default=None, metadata=check(
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= 2048 and v % 32 == 0),
        "null (the data's own size) or a multiple of 32 in 32..2048"))
    synthetic_train: int = field(default=1024, metadata=check(lambda v: 1 <= v <= 1_000_000, "an integer in 1..1000000"))
    synthetic_val: int = field(default=100, metadata=check(lambda v: 1 <= v <= 1_000_000, "an integer in 1..1000000"))
    cache_dir: Any = field(default=None, metadata=check(lambda v: v is None or isinstance(v, str), "null or a folder path"))


@dataclass
class AugmentationConfig:
    rotation: float = field(default=20.0, metadata=between(0, 180, "degrees in [0, 180]"))
    scale_range: Any = field(default_factory=lambda: [0.85, 1.15], metadata=check(_scale_ok, SCALE_ALLOWED))
    hflip: bool = True
    color_jitter: float = field(default=0.2, metadata=check(lambda v: 0 <= v <= 1, "a number in [0, 1]"))


@dataclass
class DebugConfig:
    nan_at_step: Any = field(default=None, metadata=check(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10**12), "null or a global step in 1..10^12"))
    # fault injection: a block of +Inf pixels in the first image of the batch at this global step
    inf_pixels_at_step: Any = field(default=None, metadata=check(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10**12), "null or a global step in 1..10^12"))
    step_delay: float = field(default=0.0, metadata=check(lambda v: 0 <= v <= 60, "seconds in [0, 60]"))
    # seconds slept at each control point of a validation (every 4th batch): slows a tiny run's validation down
    val_delay: float = field(default=0.0, metadata=check(lambda v: 0 <= v <= 60, "seconds in [0, 60]"))
    max_steps_per_epoch: int = field(default=0, metadata=check(lambda v: 0 <= v <= 10**9, "an integer in 0..10^9 (0 = whole epoch)"))
    # every rank appends (step, lr, gamma) per step to <run>/ranks/rank<N>.jsonl: proves DDP ranks agree
    rank_log: bool = False
    # fault injection (tests/reliability): pause halfway through writing each checkpoint's temp file,
    # so a test can kill the trainer mid-write ...
    checkpoint_write_pause: float = field(default=0.0, metadata=check(lambda v: 0 <= v <= 60, "seconds in [0, 60]"))
    # ... and make every checkpoint write from this epoch on fail with ENOSPC halfway (0 = off)
    checkpoint_enospc_from_epoch: int = field(default=0, metadata=check(lambda v: 0 <= v <= 100_000, "an integer in 0..100000 (0 = off)"))


@dataclass
class Config:
    name: str = field(default="run", metadata=check(_name_ok, "a name of 1..200 printable characters without '/', not '.' or '..', no leading/trailing spaces"))
    seed: int = field(default=42, metadata=check(lambda v: 0 <= v < 2**32, "an integer in 0..2^32-1"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    # Health-rule overrides: validated by app.health (the trainer does not use them).
    health: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


_SECTION_CLASSES = {
    "model": ModelConfig, "loss": LossConfig, "training": TrainingConfig, "data": DataConfig,
    "augmentation": AugmentationConfig, "debug": DebugConfig,
}


def field_meta(dotted: str) -> Mapping[str, Any]:
    """The metadata (check, allowed, and for a range its lo/hi) of a dotted config key."""
    section, _, key = dotted.rpartition(".")
    cls = _SECTION_CLASSES[section] if section else Config
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == key)


def all_keys() -> list[str]:
    """Every dotted key a config accepts (``health`` is free-form)."""
    keys = [f.name for f in dataclasses.fields(Config) if f.name not in _SECTION_CLASSES]
    for sec, cls in _SECTION_CLASSES.items():
        keys += [f"{sec}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


# --- YAML reading ------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict:
    """Read a config file safely (trainer.core.safe_yaml); errors are ConfigErrors naming the file."""
    return read_yaml_mapping(path, ConfigError, "a mapping of sections (model, loss, training, data, ...)")


# --- validation --------------------------------------------------------------------------


def _suggest(key: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _build_section(cls: type, data: Any, src: str, section: str) -> Any:
    if data is None:
        raise ConfigError(f"{src}: {section}: the section is empty; give it keys (indented under it), "
                          "or leave it out to use its defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: {section}: expected a mapping of keys, got {type(data).__name__} {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{src}: {section}.{_key(key)}"
        if key not in fields:
            elsewhere = [k for k in all_keys() if k.split(".")[-1] == key]
            hint = f"; did you mean '{elsewhere[0]}'?" if elsewhere else _suggest(str(key), list(fields))
            if not hint:
                hint = _suggest(f"{section}.{key}", all_keys())
            raise ConfigError(f"{where}: unknown key{hint} (allowed in {section}: {', '.join(fields)})")
        f = fields[key]
        allowed = f.metadata.get("allowed", f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "?"))
        if isinstance(value, bool) and "bool_words" in f.metadata:
            value = f.metadata["bool_words"][value]
        value = _coerce(value, f.type, where, allowed)
        pred = f.metadata.get("check")
        if pred is not None:
            try:
                ok = pred(value)
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise ConfigError(f"{where} = {_show(value)}: out of range; allowed: {allowed}")
        kwargs[key] = value
    return cls(**kwargs)


def from_dict(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a nested mapping and build a :class:`Config`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    top_fields = {f.name: f for f in dataclasses.fields(Config)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in top_fields:
            elsewhere = [k for k in all_keys() if k.split(".")[-1] == key]
            hint = f"; did you mean '{elsewhere[0]}'?" if elsewhere else _suggest(str(key), list(top_fields))
            raise ConfigError(f"{source}: {_key(key)}: unknown key{hint} (allowed at the top level: {', '.join(top_fields)})")
        if key in _SECTION_CLASSES:
            kwargs[key] = _build_section(_SECTION_CLASSES[key], value, source, key)
        elif key == "health":
            if value is None:
                raise ConfigError(f"{source}: health: the section is empty; give it rule overrides, or leave it out")
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: health: expected a mapping of rule overrides, got {type(value).__name__}")
            kwargs[key] = value
        else:
            f = top_fields[key]
            allowed = f.metadata.get("allowed", "")
            value = _coerce(value, f.type, f"{source}: {key}", allowed)
            try:
                ok = f.metadata["check"](value)
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise ConfigError(f"{source}: {key} = {_show(value)}: out of range; allowed: {allowed}")
            kwargs[key] = value
    cfg = Config(**kwargs)
    _cross_checks(cfg, source)
    return cfg


def _cross_checks(cfg: Config, source: str) -> None:
    t = cfg.training
    if t.warmup_epochs >= t.epochs:
        raise ConfigError(
            f"{source}: training.warmup_epochs = {t.warmup_epochs}: must be < training.epochs ({t.epochs})"
        )
    a = cfg.augmentation.scale_range
    cfg.augmentation.scale_range = [float(a[0]), float(a[1])]
    if isinstance(cfg.loss.focal_alpha, list):
        cfg.loss.focal_alpha = [float(x) for x in cfg.loss.focal_alpha]
    elif cfg.loss.focal_alpha is not None and cfg.loss.focal_alpha != "balanced":
        cfg.loss.focal_alpha = float(cfg.loss.focal_alpha)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``loss.focal_gamma=1.5`` -> (["loss", "focal_gamma"], 1.5); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set loss.focal_gamma=1.5")
    key, _, raw = item.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"--set {key.strip()}: cannot parse the value {_show(raw)}") from None
    try:
        check_size(value)
    except ValueError as e:
        raise ConfigError(f"--set {key}: {e}") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``--set`` overrides to a raw mapping (validation happens afterwards, naming --set)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    known = all_keys()
    for item in overrides:
        path, value = parse_override(item)
        dotted = ".".join(path)
        if path[0] != "health" and dotted not in known:
            raise ConfigError(f"--set {item}: unknown key '{dotted}'{_suggest(dotted, known)}")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: '{part}' is not a section")
        node[path[-1]] = value
    return out


def _shrink_warmup_with_epochs(data: dict, file_training: dict, overrides: Sequence[str]) -> None:
    """``--set training.epochs=3`` on a 250-epoch config keeps the warmup's share of the run.

    Only when the override shortens the run and leaves the file's warmup at or past the new end;
    an explicit ``--set training.warmup_epochs`` is validated as written.
    """
    keys = {parse_override(o)[0] and ".".join(parse_override(o)[0]) for o in overrides}
    if "training.epochs" not in keys or "training.warmup_epochs" in keys:
        return
    t = data.get("training")
    if not isinstance(t, dict):
        return
    new_e, old_e = t.get("epochs"), file_training.get("epochs", TrainingConfig.epochs)
    warm = file_training.get("warmup_epochs", TrainingConfig.warmup_epochs)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (new_e, old_e, warm)) and 0 < new_e <= warm:
        t["warmup_epochs"] = min(new_e - 1, warm * new_e // max(old_e, 1))


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate a config file. Raises ConfigError with a one-line message."""
    data = read_yaml(path)
    source = str(path)
    if overrides:
        file_training = data.get("training") if isinstance(data.get("training"), dict) else {}
        data = apply_overrides(data, overrides)
        source = f"{path} (with --set {' '.join(overrides)})"
        _shrink_warmup_with_epochs(data, file_training, overrides)
    cfg = from_dict(data, source)
    if "name" not in data:
        cfg.name = Path(path).stem
    return cfg
