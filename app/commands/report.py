"""`segwatch report RUN ... [--baseline RUN] --out DIR`: the plan's report from the run records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.runlib import RunNotFound, default_runs_dir, resolve_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="Markdown report of runs: table per run, ablation chain, per-class F, γ/α study, adjustments",
        description="Write DIR/report.md (and report.json with the exact numbers, and figures: PNGs with matplotlib "
        "installed, text plots otherwise) and print the summary (runs, ablation, γ/α study, adjustments; --full: everything). Every number comes from the run records.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names (under --runs-dir) or run directories")
    p.add_argument("--baseline", metavar="RUN",
                   help="the run the others are compared with (default: the first with model.attention none and no "
                   "focal loss, else the first RUN)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--after", type=int, default=5, metavar="N", help="epochs of val F shown after each adjustment (5)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--full", action="store_true",
                   help="print everything on the terminal (per-class F, text plots), not only the summary")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="folder of runs ($SEGWATCH_RUNS or ./runs)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from app.report.collect import collect
    from app.report.figures import have_matplotlib, png_figures, text_figures
    from app.report.previews import preview_figures
    from app.report.render import markdown, print_terminal, report_json
    from app.report.tables import build_tables

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if args.after < 1:
        print(f"segwatch: --after {args.after}: allowed: an integer >= 1", file=sys.stderr)
        return 2
    try:
        dirs = [resolve_run(r, runs_dir) for r in args.runs]
        base_dir = resolve_run(args.baseline, runs_dir) if args.baseline else None
    except RunNotFound as e:
        print(f"segwatch: {e}", file=sys.stderr)
        return 2
    seen, recs = set(), []
    for d in ([base_dir] if base_dir is not None else []) + dirs:
        key = d.resolve()
        if key in seen:
            continue
        seen.add(key)
        recs.append(collect(d))
    if base_dir is not None:
        base = recs[0]
    else:
        plain = [r for r in recs if r.attention == "none" and not r.use_focal and r.best_val_f is not None]
        base = plain[0] if plain else recs[0]
    recs = [base] + [r for r in recs if r is not base]
    tables, absent = build_tables(recs, base, after=args.after)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures, texts = [], []
    if not args.no_figures:
        if have_matplotlib():
            figures = [(t, "png", f) for t, f in png_figures(recs, out)]
        else:
            texts = text_figures(recs)
            figures = [(t, "text", x) for t, x in texts]
            absent.append("Figures are text plots: install matplotlib (pip install -e \".[plots]\") for PNGs.")
        masks, skipped = preview_figures(recs, out)
        figures += [(t, "png", f) for t, f in masks]
        absent += skipped
    (out / "report.md").write_text(markdown(tables, absent, figures, [r.name for r in recs]), encoding="utf-8")
    (out / "report.json").write_text(report_json(tables, absent), encoding="utf-8")
    print_terminal(tables, absent, texts, out_file=str(out / "report.md"),
                   pictures=[t for t, kind, _ in figures if kind == "png"], full=args.full)
    print(f"segwatch: wrote {out / 'report.md'} and {out / 'report.json'}"
          + (f" and {len(figures)} PNG figures" if figures and figures[0][1] == "png" else ""), file=sys.stderr)
    return 0
