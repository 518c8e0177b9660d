"""Helpers for the cockpit's Pilot tests: build an app on fake runs, wait for what the screen shows."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Callable

from app.health import load_rules
from app.runlib import Run
from app.tui.app import SegwatchApp


# A wait is a bound, not a duration: it ends as soon as the screen shows what is awaited. Loaded CI
# boxes (several suites, long trainings beside) run the app many times slower than a quiet one, so
# every bound is stretched by this factor; a test that passes only takes longer to fail.
TIMEOUT_SCALE = float(os.environ.get("SEGWATCH_TEST_TIMEOUT_SCALE", "3"))


def make_app(run_dirs: list[Path], interval: float = 0.1, rules=None, refs=(), runs_dir: str = "runs") -> SegwatchApp:
    runs = [Run(d) for d in run_dirs]
    rules = rules or [load_rules() for _ in runs]
    return SegwatchApp(runs, rules, interval=interval, gpu=False, refs=refs, runs_dir=runs_dir)


def pane_text(app: SegwatchApp, index: int = 0) -> str:
    """The plain text of every text widget in a pane (plots excluded)."""
    pane = app.panes[index]
    parts = []
    for w in pane.children:
        if hasattr(w, "draw") and w.view is not None:
            parts.append(w.draw(w.view).plain)
    return "\n".join(parts)


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` holds; fail with ``what`` after ``timeout`` seconds."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        await pilot.pause(0.05)


async def wait_text(pilot, app: SegwatchApp, needle: str, index: int = 0, timeout: float = 10.0) -> str:
    await wait_for(pilot, lambda: needle in pane_text(app, index), timeout, f"{needle!r} in pane {index}")
    return pane_text(app, index)


async def palette(pilot, command: str) -> None:
    """Run ``command`` from the command palette (ctrl+p): typed key by key, then enter."""
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    for ch in command:
        await pilot.press("space" if ch == " " else ch)
    await pilot.pause(0.6)  # the palette's search settles before enter picks its first hit
    await pilot.press("enter")

def control_lines(run_dir: Path) -> list[dict]:
    import json

    p = Path(run_dir) / "control.jsonl"
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
