"""What data a run trains on, in words: one line for the trainer's log, the cockpit and headless.

Pure Python (the app imports it): it reads the ``data`` dict of the start event
(``trainer.data.build_datasets``'s description, see docs/run-directory.md).
"""

from __future__ import annotations

from typing import Any


def _size(v: Any) -> str:
    return f"{v} px" if isinstance(v, int) else "mixed sizes" if v is None else str(v)


def data_badge(desc: dict | None) -> str:
    """``SYNTHETIC DATA`` or ``REAL DATA``; empty when the run has not said yet."""
    if not desc:
        return ""
    return "SYNTHETIC DATA" if desc.get("synthetic") else "REAL DATA"


def data_line(desc: dict | None) -> str:
    """``real data: mini-challenge layout at /data/mini | train 1000, val 100 | native 512 px, training at
    512 px (native, data.image_size unset) | val F at each mask's own size | class weights: off``."""
    if not desc:
        return ""
    if desc.get("synthetic"):
        return (f"built-in synthetic faces (data.root unset): train {desc.get('train_count')}, "
                f"val {desc.get('val_count')} | {_size(desc.get('image_size'))} | scores say nothing about the real task")
    layout = str(desc.get("layout") or desc.get("kind") or "?").split(" (")[0]
    parts = [f"real data: {layout} layout at {desc.get('root')}",
             f"train {desc.get('train_count')}, val {desc.get('val_count')}"
             + (f" (val_fraction {desc['val_fraction']})" if desc.get("val_fraction") is not None else ""),
             f"native {_size(desc.get('native_size'))}, training at {_size(desc.get('image_size'))} "
             f"({desc.get('image_size_source', 'data.image_size')})",
             f"val F at {desc.get('val_scored_at', 'the training size')}"]
    cw = desc.get("class_weights")
    if isinstance(cw, dict):
        parts.append(f"class weights: {'on' if cw.get('enabled') else 'off'}, from {cw.get('source')}")
    return " | ".join(parts)
