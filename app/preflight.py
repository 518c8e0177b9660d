"""What can be checked about a run before its run directory is made (no torch, os only).

``segwatch run`` (and a plan) validate every config with ``trainer.core.config.load_config``; this
adds what the trainer would otherwise find only after the run directory exists: a ``data.root``
that is not there, or whose layout is neither dataset layout (the same rules as
``trainer.data.dataset.detect_format`` and the dataset classes' folder checks, with
``os.path`` only). File contents are still checked by the trainer (exit 2 before training).
A problem raises ``ConfigError`` with one line naming the config, the key and what is allowed.
"""

from __future__ import annotations

import os
from typing import Any

from trainer.core.config import ConfigError

MINI_DIRS = ("train/images", "train/masks", "val/images", "val/masks")
CELEB_DIRS = ("CelebA-HQ-img", "CelebAMask-HQ-mask-anno")  # trainer.data.folders.CelebAMaskHQDataset
ALLOWED = ("allowed: null (the built-in synthetic data), or a folder holding train/images/, train/masks/, "
           "val/images/, val/masks/ (mini challenge) or CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/ (CelebAMask-HQ)")


def check_data(cfg: Any, source: str) -> None:
    """ConfigError if ``cfg.data.root`` cannot be a dataset of ``cfg.data.format``."""
    root = getattr(cfg.data, "root", None)
    if root is None or root == "":
        return
    fmt = getattr(cfg.data, "format", "auto")
    where = f"{source}: data.root = {root!r}"
    path = os.path.abspath(str(root))
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        raise ConfigError(f"{where}: {path} {what}; {ALLOWED}")
    has = {d: os.path.isdir(os.path.join(path, d)) for d in (*MINI_DIRS, *CELEB_DIRS)}
    mini, celeb = has["train/images"], all(has[d] for d in CELEB_DIRS)
    if fmt == "auto":
        if mini and celeb:
            raise ConfigError(f"{where}: both layouts found (train/images/ and CelebA-HQ-img/); "
                              "allowed: set data.format to 'mini' or 'celebamask'")
        if not mini and not celeb:
            raise ConfigError(f"{where}: unknown layout (it holds: {_listing(path)}); {ALLOWED}")
        fmt = "mini" if mini else "celebamask"
    need = MINI_DIRS if fmt == "mini" else CELEB_DIRS
    missing = [d + "/" for d in need if not has[d]]
    if missing:
        raise ConfigError(f"{where}: folder missing for data.format {fmt}: {', '.join(missing)} "
                          f"(it holds: {_listing(path)}); {ALLOWED}")


def _listing(path: str, n: int = 8) -> str:
    try:
        with os.scandir(path) as it:
            names = sorted(e.name + ("/" if e.is_dir() else "") for e in it)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "") if names else "nothing"
