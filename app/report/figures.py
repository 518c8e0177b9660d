"""Figures: val F curves and per-class bars. PNGs with matplotlib (the optional `plots` extra:
pip install -e ".[plots]"), text plots (plotext) otherwise."""

from __future__ import annotations

import re
from pathlib import Path

from app.report.collect import RunRecord
from trainer.core.classes import CLASS_NAMES, REAL_SHARES

MARKERS = ["●", "+", "x", "o", "*", "#", "@", "%"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _class_order() -> list[int]:
    return sorted(range(len(CLASS_NAMES)), key=lambda c: REAL_SHARES[c])


def png_figures(recs: list[RunRecord], out: Path) -> list[tuple[str, str]]:
    """[(title, file name)] written under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in recs:
        pts = [(h["epoch"], h["val_f"]) for h in r.history if isinstance(h.get("val_f"), (int, float))]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=r.name)
    ax.set_xlabel("epoch"), ax.set_ylabel("val F (per image)"), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(out / "val_f.png", dpi=120)
    plt.close(fig)
    figs.append(("Val F per epoch", "val_f.png"))
    order = _class_order()
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(len(recs), 1)
    for k, r in enumerate(recs):
        pc = r.per_class()
        ax.bar([i + k * width for i in range(len(order))], [pc[c] or 0.0 for c in order], width, label=r.name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(order))], [CLASS_NAMES[c] for c in order], rotation=60)
    ax.set_ylabel("F at the best epoch"), ax.legend(), ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "per_class.png", dpi=120)
    plt.close(fig)
    figs.append(("Per-class F at the best epoch, small classes first", "per_class.png"))
    return figs


def text_figures(recs: list[RunRecord], width: int = 100) -> list[tuple[str, str]]:
    """[(title, text plot)] drawn with plotext, without colour codes (one marker per run)."""
    import plotext as plt

    out = []
    plt.clf()
    plt.theme("clear")
    plt.plotsize(width, 22)
    for k, r in enumerate(recs):
        pts = [(h["epoch"], h["val_f"]) for h in r.history if isinstance(h.get("val_f"), (int, float))]
        if pts:
            plt.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{MARKERS[k % len(MARKERS)]} {r.name}",
                     marker=MARKERS[k % len(MARKERS)])
    plt.xlabel("epoch")
    plt.title("val F per epoch")
    out.append(("Val F per epoch", _ANSI.sub("", plt.build())))
    lines = []
    order = _class_order()
    scale = 40
    name_w = max([len(r.name) for r in recs] + [4])
    for c in order:
        lines.append(f"{CLASS_NAMES[c]}")
        for r in recs:
            v = r.per_class()[c]
            bar = "█" * int(round((v or 0.0) * scale))
            lines.append(f"  {r.name:<{name_w}} {bar} {'–' if v is None else f'{v:.4f}'}")
    out.append(("Per-class F at the best epoch, small classes first", "\n".join(lines)))
    plt.clf()
    return out
