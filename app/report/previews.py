"""The report's mask previews: each run's first and last epoch on disk (previews/, written by the
trainer at each validation), copied into the report folder as PNGs. Read through
app.runlib.previews: a link, FIFO, oversized or undecodable file is skipped with a sentence."""

from __future__ import annotations

import re
from pathlib import Path

from app.report.collect import RunRecord
from app.runlib import previews as pv


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "run"


def preview_figures(recs: list[RunRecord], out: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """([(title, file name)] written under ``out``, [sentences for runs whose previews were skipped])."""
    figs, notes = [], []
    for r in recs:
        try:
            index = pv.read_index(r.path)
        except FileNotFoundError:
            notes.append(f"{r.name}: no mask previews in its run directory (a run from before previews, or no "
                         "validation yet).")
            continue
        except OSError as e:  # safeio.Refused included: one line naming the file
            notes.append(f"{r.name}: mask previews skipped: {e}")
            continue
        if not index.epochs:
            continue
        for e in sorted({index.epochs[0], index.epochs[-1]}):
            try:
                data = pv.read_png(r.path, e)
                pv.decode(data, pv.png_path(r.path, e))
            except OSError as err:
                notes.append(f"{r.name}: mask preview of epoch {e} skipped: {err}")
                continue
            name = f"previews_{_safe(r.name)}_epoch_{e:04d}.png"
            (out / name).write_bytes(data)
            figs.append((f"{r.name}: masks at epoch {e} (image | truth | prediction | errors: red wrong, "
                         "yellow wrong on a small part)", name))
    return figs, notes
