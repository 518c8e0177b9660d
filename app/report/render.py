"""Writing the report: Markdown (with figures) and the same tables on the terminal (rich)."""

from __future__ import annotations

import json
import time
from typing import Any

from app.report.tables import Table


def _cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown_table(t: Table) -> str:
    lines = [f"## {t.title}", ""]
    lines.append("| " + " | ".join(_cell(c) for c in t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    for row in t.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    if not t.rows:
        lines.append("| " + " | ".join("" for _ in t.columns) + " |")
    lines.append("")
    lines += [f"- {n}" for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def markdown(tables: list[Table], absent: list[str], figures: list[tuple[str, str, str]], runs: list[str]) -> str:
    """``figures``: (title, kind 'png' | 'text', file name or text)."""
    head = [f"# segwatch report: {', '.join(runs)}", "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from the run records (events.jsonl, config.yaml, "
            "meta.json, control.jsonl); report.json holds the same numbers unrounded.", ""]
    body = [markdown_table(t) for t in tables]
    if absent:
        body.append("\n".join(f"- {a}" for a in absent) + "\n")
    if figures:
        body.append("## Figures\n")
        for title, kind, what in figures:
            body.append(f"### {title}\n\n" + (f"![{title}]({what})\n" if kind == "png" else f"```\n{what}\n```\n"))
    return "\n".join(head) + "\n" + "\n".join(body)


def report_json(tables: list[Table], absent: list[str]) -> str:
    return json.dumps({"v": 1, "t": time.time(), "tables": {t.key: t.data for t in tables}, "absent": absent},
                      indent=1, default=str) + "\n"


FILE_ONLY = ("per_class",)  # long sections kept for report.md (a 19-class x N-run table floods a terminal)


def print_terminal(tables: list[Table], absent: list[str], texts: list[tuple[str, str]] = (), console: Any = None,
                   out_file: str = "report.md", pictures: list[str] = (), full: bool = False) -> None:
    """The summary (runs, ablation, study, adjustments) on the terminal; per-class F and the text plots are named,
    not printed (they are in ``out_file``), unless ``full``. The last line says where the full report is."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    console = console or Console(width=None if sys.stdout.isatty() else 200)
    for t in tables:
        if t.key in FILE_ONLY and not full:
            continue
        if not t.rows and t.notes:  # an empty table (e.g. no live adjustment): its last note says so
            console.print(f"[bold]{escape(t.title)}[/]: {escape(t.notes[-1])}", highlight=False)
            console.print()
            continue
        rt = RichTable(title=escape(t.title), title_justify="left", show_lines=False)
        for c in t.columns:
            rt.add_column(escape(str(c)), overflow="fold")
        for row in t.rows:
            rt.add_row(*[escape(str(x)) for x in row])
        console.print(rt)
        for n in t.notes:
            console.print(f"  [dim]{escape(n)}[/]", highlight=False)
        console.print()
    if full:
        for title, text in texts:
            console.print(f"[bold]{escape(title)}[/]", highlight=False)
            console.print(text, markup=False, highlight=False)
            console.print()
    for a in absent:
        console.print(f"[yellow]{escape(a)}[/]", highlight=False)
    kept = [] if full else [t.title for t in tables if t.key in FILE_ONLY] + [title for title, _ in texts]
    if pictures:
        kept.append(f"{len(pictures)} pictures (figures, mask previews)")
    line = f"Full report: {escape(out_file)}."
    if kept:
        line += " Only there: " + "; ".join(escape(k) for k in kept) + "."
    if not full:
        line += " --full prints it all here."
    console.print(line, highlight=False, soft_wrap=True)
