"""A trained model, ready for inference: its checkpoint loaded safely and checked against its config.

Checkpoints may come from anywhere (a run of this trainer, a colleague, a download): they are
always loaded with ``torch.load(..., weights_only=True)``, which refuses pickled code. A
checkpoint whose tensors do not fit the model its config describes raises
:class:`CheckpointMismatch` saying which keys are missing, unexpected or of another shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer import checkpoint as ckpt
from trainer.core.config import Config, ConfigError, from_dict, load_config, read_yaml
from trainer.model import DEFAULT_WIDTH, build_model

SHOW = 4  # example keys per kind of difference in a mismatch message


class CheckpointMismatch(ConfigError):
    """The checkpoint's state_dict does not fit the model built from the config."""


@dataclass
class LoadedModel:
    source: str  # what the user named: a run directory or a checkpoint file
    checkpoint: Path
    config: Config
    config_source: str
    model: torch.nn.Module
    epoch: Any = None
    best_val_f: Any = None
    best_epoch: Any = None

    @property
    def image_size(self) -> int | None:
        """The training size; None (a config with data.image_size unset): each image at its own size,
        what the trainer does with real data then (a run's config.yaml records the size it chose)."""
        return self.config.data.image_size

    def describe(self) -> dict:
        m = self.config.model
        return {"source": self.source, "checkpoint": str(self.checkpoint), "config": self.config_source,
                "name": self.config.name, "attention": m.attention, "width": m.width or DEFAULT_WIDTH,
                "image_size": self.image_size, "epoch": self.epoch, "best_val_f": self.best_val_f,
                "best_epoch": self.best_epoch}


def safe_load(path: Path) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU; ConfigError naming the file if refused."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint file")
    try:
        payload = ckpt.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - pickled code, a torn file, not a checkpoint at all
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: cannot be loaded safely (torch.load weights_only=True): "
                          f"{type(e).__name__}: {msg[:300]}") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: holds a {type(payload).__name__}, not a checkpoint (a dict with 'model' or a state_dict)")
    return payload


def state_dict_of(payload: dict, path: Path) -> dict[str, torch.Tensor]:
    sd = payload.get("model") if isinstance(payload.get("model"), dict) else payload
    if not sd or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ConfigError(f"{path}: no model weights found (expected a 'model' state_dict or a plain state_dict)")
    for prefix in ("module.", "_orig_mod."):  # saved from DDP / torch.compile wrappers
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def check_fit(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path, cfg: Config, cfg_source: str) -> None:
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if not (missing or unexpected or shapes):
        return
    m = cfg.model
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys of the model missing from the checkpoint (e.g. {_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} checkpoint keys the model does not have (e.g. {_examples(unexpected)})")
    if shapes:
        ex = ", ".join(f"{k}: checkpoint {list(sd[k].shape)} vs model {list(want[k].shape)}" for k in shapes[:SHOW])
        parts.append(f"{len(shapes)} tensors of another shape ({ex})")
    raise CheckpointMismatch(
        f"checkpoint mismatch: {path} does not fit the model of {cfg_source} (model.attention={m.attention}, "
        f"model.width={m.width or DEFAULT_WIDTH}): {'; '.join(parts)}. Was it trained with another "
        "model.attention or model.width? Pass the config it was trained with (--config).")


def _examples(keys: list[str]) -> str:
    """A few keys, grouped by module: 'stages.1.2.0.attn.msca.*, head.weight'."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(k.rsplit(".", 1)[0] if "." in k else k, []).append(k)
    shown = [f"{g}.*" if len(ks) > 1 else ks[0] for g, ks in groups.items()]
    return ", ".join(shown[:SHOW]) + (f", ... ({len(shown)} modules)" if len(shown) > SHOW else "")


def resolve(source: str, checkpoint: str = "best", config: str | None = None) -> tuple[Path, dict, Config, str]:
    """(checkpoint path, payload, config, where the config came from) for a run dir or a .pt file."""
    p = Path(source)
    if p.is_dir():
        path = p / "checkpoints" / f"{checkpoint}.pt"
        if not path.is_file():
            have = sorted(x.name for x in (p / "checkpoints").glob("*.pt")) if (p / "checkpoints").is_dir() else []
            raise ConfigError(f"{source}: no checkpoints/{checkpoint}.pt"
                              + (f" (it has {', '.join(have)}; pick one with --checkpoint)" if have
                                 else " (the run never finished an epoch)"))
        if config:
            cfg_source = config
            cfg = load_config(config)
        elif (p / "config.yaml").is_file():
            cfg_source = str(p / "config.yaml")
            cfg = from_dict(read_yaml(cfg_source), source=cfg_source)
        else:
            cfg_source, cfg = "", None
        payload = safe_load(path)
    elif p.is_file():
        path = p
        payload = safe_load(path)
        if config:
            cfg_source, cfg = config, load_config(config)
        elif isinstance(payload.get("config"), dict):
            cfg_source = f"{path} (its embedded config)"
            cfg = from_dict(payload["config"], source=cfg_source)
        else:
            raise ConfigError(f"{path}: the checkpoint holds no config; pass the config it was trained with (--config FILE)")
    else:
        raise ConfigError(f"{source}: no such run directory or checkpoint file")
    if cfg is None:
        if not isinstance(payload.get("config"), dict):
            raise ConfigError(f"{source}: no config.yaml and no config in the checkpoint; pass --config FILE")
        cfg_source = f"{path} (its embedded config)"
        cfg = from_dict(payload["config"], source=cfg_source)
    return path, payload, cfg, cfg_source


def load_model(source: str, *, checkpoint: str = "best", config: str | None = None,
               device: torch.device = torch.device("cpu")) -> LoadedModel:
    path, payload, cfg, cfg_source = resolve(source, checkpoint, config)
    sd = state_dict_of(payload, path)
    # the stride-2 decoder level has its own weights: the checkpoint says which head it was trained with
    stride = 2 if any(k.startswith("detail_") for k in sd) else 4
    model = build_model(attention=cfg.model.attention, width=cfg.model.width or DEFAULT_WIDTH, dropout=0.0,
                        output_stride=stride)
    check_fit(model, sd, path, cfg, cfg_source)
    model.load_state_dict(sd)
    model.eval().to(device)
    return LoadedModel(source=source, checkpoint=path, config=cfg, config_source=cfg_source, model=model,
                       epoch=payload.get("epoch"), best_val_f=payload.get("best_val_f"),
                       best_epoch=payload.get("best_epoch"))
