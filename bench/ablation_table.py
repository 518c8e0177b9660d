"""Issue 12: the tables of bench/RESULTS.md from the stored curves, so later changes compare the same way.

    python bench/ablation_table.py bench/curves/issue12_v4_chain.json [more.json ...]
           [--epochs 1,10,20,30,50,100] [--per-class 30,end] [--at 100] [--pair lmsa_focal,lmsa_focal_balanced]

Reads curve files written by ``python bench/quality.py --snapshot RUN_DIR... --json FILE`` (one
row per run: ``val_f_curve``, ``per_class_f_curve``, ``health_curve``, ``seed``, ...) and prints
markdown:

1. the curve table: val F at the given epochs, the last and the best epoch, the first epoch from
   which every class has F > 0 for good, the health colours of every epoch, s/epoch;
2. per-class F at the given epochs (``end``: each run's last), the small parts first;
3. the seed table at epoch ``--at``: runs grouped by variant (the tag without its ``_sN`` seed
   suffix), mean and range over the seeds of val F and of the small parts' mean F, each run's
   value being its mean over the ``--window`` epochs that end at ``--at`` (one epoch's value
   moves by about 0.01 from the next);
4. for each ``--pair A,B``: B - A per seed at epoch ``--at`` (val F, small parts' mean, each small
   part, over the same window), for the seeds both variants have.

Pure Python over JSON: no torch, no trainer.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.core.classes import CLASS_NAMES, SMALL_CLASSES  # noqa: E402

SEED_SUFFIX = re.compile(r"_s\d+$")


def variant(run: dict) -> str:
    """The run's variant: its tag without the ``_sN`` seed suffix."""
    return SEED_SUFFIX.sub("", run["tag"])


def at(curve: list, epoch: int):
    """The curve's value after ``epoch`` (1-based), None past its end."""
    return curve[epoch - 1] if 1 <= epoch <= len(curve) else None


def window_mean(curve: list, epoch: int, window: int = 1):
    """The mean of the curve over epochs ``epoch - window + 1`` .. ``epoch`` (a list of per-class rows
    gives the mean row); None past its end. One epoch's val F moves by about 0.01 from the next."""
    rows = curve[max(0, epoch - window):epoch] if 1 <= epoch <= len(curve) else []
    if not rows:
        return None
    if isinstance(rows[0], list):
        return [_mean(col) for col in zip(*rows)]
    return _mean(rows)


def span(epoch: int, window: int) -> str:
    return f"@{epoch}" if window <= 1 else f"@{max(1, epoch - window + 1)}-{epoch} mean"


def small_mean(per_class: list) -> float | None:
    vals = [per_class[c] for c in SMALL_CLASSES if per_class[c] is not None]
    return sum(vals) / len(vals) if vals else None


def all_classes_from(zero_curve: list[int]) -> int | None:
    """The first epoch from which no class has F 0 (for good), None if never."""
    first = None
    for i, z in enumerate(zero_curve):
        if z == 0:
            first = first or i + 1
        else:
            first = None
    return first


def colours(health: list[str]) -> str:
    """'green 1-85 (85)' style: each colour, its first and last epoch, and how many epochs."""
    seen: dict[str, list[int]] = {}
    for i, h in enumerate(health):
        seen.setdefault(h, []).append(i + 1)
    return ", ".join(f"{k} {min(v)}-{max(v)} ({len(v)})" for k, v in seen.items())


def fmt(x, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def curve_table(runs: list[dict], epochs: list[int]) -> list[str]:
    head = ["run", "seed", *(f"@{e}" for e in epochs), "last (epoch)", "best (epoch)",
            "all 19 classes F > 0 from", "health, every epoch", "s/epoch (median)", "CPU s/epoch"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        vf = r["val_f_curve"]
        best = max(range(len(vf)), key=lambda i: vf[i])
        cpu = r.get("cpu_s_per_epoch_median")
        out.append("| " + " | ".join([
            r["tag"], str(r.get("seed")), *(fmt(at(vf, e)) for e in epochs),
            f"{vf[-1]:.3f} ({len(vf)})", f"{vf[best]:.3f} ({best + 1})",
            str(all_classes_from(r["classes_f_zero_curve"]) or "never"), colours(r.get("health_curve", [])),
            fmt(r.get("epoch_s_median"), 1), fmt(cpu, 1)]) + " |")
    return out


def class_order() -> list[int]:
    return list(SMALL_CLASSES) + [i for i in range(len(CLASS_NAMES)) if i not in SMALL_CLASSES]


def per_class_table(runs: list[dict], epochs: list[str]) -> list[str]:
    order = class_order()
    out = ["| run | epoch | small mean | " + " | ".join(CLASS_NAMES[i] for i in order) + " |",
           "|---|---|---|" + "---|" * len(order)]
    for r in runs:
        pc = r["per_class_f_curve"]
        shown = set()
        for e in epochs:
            n = len(pc) if e == "end" else int(e)
            row = at(pc, n)
            if row is None or n in shown:  # "end" of a run that ends at a listed epoch: once
                continue
            shown.add(n)
            out.append(f"| {r['tag']} | {n} | {fmt(small_mean(row), 3)} | "
                       + " | ".join(fmt(row[i], 2) for i in order) + " |")
    return out


def spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def seed_table(runs: list[dict], epoch: int, window: int = 1) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for r in runs:
        if len(r["val_f_curve"]) >= epoch:
            groups.setdefault(variant(r), []).append(r)
    w = span(epoch, window)
    out = [f"| variant | seeds | val F {w}: mean (min-max) over seeds | small parts' mean F {w} | "
           f"best val F by {epoch} |", "|---|---|---|---|---|"]
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r.get("seed") or 0)
        vf = [window_mean(r["val_f_curve"], epoch, window) for r in rs]
        sm = [small_mean(window_mean(r["per_class_f_curve"], epoch, window)) for r in rs]
        best = [max(r["val_f_curve"][:epoch]) for r in rs]
        out.append(f"| {name} | {', '.join(str(r.get('seed')) for r in rs)} | {spread(vf)} | "
                   f"{spread([x for x in sm if x is not None])} | {spread(best)} |")
    return out


def pair_table(runs: list[dict], a: str, b: str, epoch: int, window: int = 1) -> list[str]:
    """B - A per seed at ``epoch``: val F, the small parts' mean and each small part."""
    by = {(variant(r), r.get("seed")): r for r in runs if len(r["val_f_curve"]) >= epoch}
    seeds = sorted(s for (v, s) in by if v == a and (b, s) in by)
    names = [CLASS_NAMES[i] for i in SMALL_CLASSES]
    out = [f"| {b} - {a} {span(epoch, window)}, seed | val F | small mean | " + " | ".join(names) + " |",
           "|---|---|---|" + "---|" * len(names)]
    diffs: list[list[float | None]] = []
    for s in seeds:
        ra, rb = by[(a, s)], by[(b, s)]
        pa, pb = (window_mean(r["per_class_f_curve"], epoch, window) for r in (ra, rb))
        row = [_sub(window_mean(rb["val_f_curve"], epoch, window), window_mean(ra["val_f_curve"], epoch, window)),
               _sub(small_mean(pb), small_mean(pa)), *(_sub(pb[i], pa[i]) for i in SMALL_CLASSES)]
        diffs.append(row)
        out.append(f"| {s} | " + " | ".join(_signed(x) for x in row) + " |")
    if len(diffs) > 1:
        cols = list(zip(*diffs))
        out.append("| mean | " + " | ".join(_signed(_mean(c)) for c in cols) + " |")
    return out


def _sub(x, y):
    return None if x is None or y is None else x - y


def _mean(xs):
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _signed(x) -> str:
    return "-" if x is None else f"{x:+.3f}"


def load(paths: list[str]) -> list[dict]:
    runs: list[dict] = []
    for p in paths:
        runs.extend(json.loads(Path(p).read_text())["runs"])
    return runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curves", nargs="+", help="curve JSON files from bench/quality.py --snapshot")
    p.add_argument("--epochs", default="1,10,20,30,50,100,250,300")
    p.add_argument("--per-class", default="30,end")
    p.add_argument("--at", type=int, default=100, help="the epoch of the seed and pair tables")
    p.add_argument("--window", type=int, default=5,
                   help="seed and pair tables: the mean over this many epochs ending at --at")
    p.add_argument("--pair", action="append", default=[], metavar="A,B", help="print B - A per seed")
    a = p.parse_args(argv)
    runs = load(a.curves)
    print("\n".join(curve_table(runs, [int(e) for e in a.epochs.split(",")])))
    print()
    print("\n".join(per_class_table(runs, a.per_class.split(","))))
    print()
    print("\n".join(seed_table(runs, a.at, a.window)))
    for pair in a.pair:
        x, y = pair.split(",")
        print()
        print("\n".join(pair_table(runs, x, y, a.at, a.window)))


if __name__ == "__main__":
    main()
