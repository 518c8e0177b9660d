"""`segwatch evaluate --pred DIR --gt DIR [--json FILE]`: the organisers' F-measure of PNG masks."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SHOW = 10  # names listed per problem before "... and N more"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score predicted masks against ground truth (the organisers' F-measure, per class too)",
        description="Match PNG masks by file stem and compute the organisers' per-image F-measure (mean over the "
        "classes present in each ground truth, then over images), the pooled F and the F of each class. Missing, "
        "extra, unreadable and mismatched files are listed by name; the exit code is 1 if there were any.",
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="predicted masks (<stem>.png, class ids)")
    p.add_argument("--gt", required=True, metavar="DIR", help="ground-truth masks (<stem>.png, class ids)")
    p.add_argument("--json", metavar="FILE", help="also write every number and list as JSON")
    p.set_defaults(func=cmd_evaluate)


def _names(items: list[str]) -> str:
    more = f" ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


def cmd_evaluate(args: argparse.Namespace) -> int:
    from app.scoring import score  # numpy + Pillow: only when this command runs
    from trainer.core.classes import CLASS_NAMES

    try:
        s = score(Path(args.pred), Path(args.gt))
    except FileNotFoundError as e:
        print(f"segwatch: {e}", file=sys.stderr)
        return 2
    problems = [("missing predictions (ground truth without a mask in --pred)", [f"{x}.png" for x in s.missing]),
                ("extra predictions (no ground truth)", [f"{x}.png" for x in s.extra]),
                ("not scored", s.unreadable), ("size mismatch, not scored", s.size_mismatch)]
    for what, items in problems:
        if items:
            print(f"segwatch: {len(items)} {what}: {_names(items)}", file=sys.stderr)
    if s.not_png:
        print(f"segwatch: ignored, not PNG: {_names(s.not_png)}", file=sys.stderr)
    r = s.result
    if r is None:
        print("segwatch: nothing to score: no prediction matches a ground-truth mask", file=sys.stderr)
        return 1
    if args.json:  # first: a reader that closes the pipe early (| head) must not cost the file
        nan = lambda x: None if isinstance(x, float) and math.isnan(x) else x  # noqa: E731 - JSON has no NaN
        data = {"f": nan(r["f"]), "pooled_f": nan(r["pooled_f"]), "images": r["images"],
                "per_class": {CLASS_NAMES[c]: f for c, f in enumerate(r["per_class"])},
                "scored": s.scored, "missing": s.missing, "extra": s.extra, "unreadable": s.unreadable,
                "size_mismatch": s.size_mismatch, "not_png": s.not_png, "complete": s.complete}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    note = "" if s.complete else "  (INCOMPLETE: only the matched, readable masks are scored; see above)"
    print(f"F-measure (organisers', per image): {r['f']:.6f} over {r['images']} images{note}")
    print(f"pooled F (one confusion matrix):   {r['pooled_f']:.6f}")
    print(f"{'id':>3} {'class':<11} {'F':>8}")
    for c, f in enumerate(r["per_class"]):
        print(f"{c:>3} {CLASS_NAMES[c]:<11} {'-' if f is None else f'{f:.4f}':>8}")
    return 0 if s.complete else 1
