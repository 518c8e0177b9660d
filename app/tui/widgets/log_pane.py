"""`t`: the selected run's trainer output (stdout.log and stderr.log), tailed live under the panes.

The logs are read by a thread of their own (:class:`LogReader`), only while the pane is open and
only the selected run's: from the last offset, partial last line kept, at most 256 KiB a read,
the last 1,000 lines kept per run (app.runlib.logtail). A crashed run's pane shows its
traceback's tail: the first read of a log takes its last 256 KiB. The widget draws the newest
lines that fit its height; stderr lines are marked.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from app.runlib.logtail import RunLogs

READ_EVERY = 0.25  # seconds between reads of the open log


class LogChanged(Message):
    """New lines for the log pane (posted from the reader's thread)."""

    def __init__(self, index: int, lines: tuple, notes: tuple) -> None:
        super().__init__()
        self.index, self.lines, self.notes = index, lines, notes


class LogReader:
    """Reads the selected run's logs on the worker thread; ``show(index, path)`` / ``hide()`` from the UI."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._target: tuple[int, Path] | None = None
        self.logs: dict[int, RunLogs] = {}  # touched on the reader's thread only

    def show(self, index: int, path: Path) -> None:
        with self._lock:
            self._target = (index, Path(path))
        self._wake.set()

    def hide(self) -> None:
        with self._lock:
            self._target = None

    def loop(self, cancelled: Callable[[], bool], post: Callable[[LogChanged], None]) -> None:
        shown: int | None = None
        while not cancelled():
            with self._lock:
                target = self._target
            if target is not None:
                index, path = target
                logs = self.logs.get(index)
                if logs is None:
                    logs = self.logs[index] = RunLogs(path)
                if logs.read() or shown != index:
                    shown = index
                    post(LogChanged(index, *logs.snapshot(400)))
            else:
                shown = None
            self._wake.wait(READ_EVERY)
            self._wake.clear()


class LogPane(Widget):

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.name_shown = ""
        self.index: int | None = None
        self.lines: tuple = ()
        self.notes: tuple = ()

    def set_run(self, index: int, name: str) -> None:
        if index != self.index:
            self.index, self.name_shown, self.lines, self.notes = index, name, (), ()
            self.refresh()

    def set_lines(self, msg: LogChanged) -> None:
        if msg.index != self.index:
            return  # an answer for the run shown before the selection moved
        self.lines, self.notes = msg.lines, msg.notes
        self.refresh()

    def text(self, rows: int | None = None) -> Text:
        """The pane's text: a title line, then the newest ``rows - 1`` lines (all with None)."""
        t = Text()
        t.append(f"trainer log · {self.name_shown} · stdout.log + stderr.log", style="bold")
        t.append("  (t closes)", style="dim")
        for note in self.notes:
            t.append(f"\n{note}", style="red")
        if rows is None:
            body = self.lines
        else:
            room = max(0, rows - 1 - len(self.notes))
            body = self.lines[-room:] if room else ()
        if not self.lines:
            t.append("\nno output yet (stdout.log and stderr.log are empty or not there)", style="dim")
        for stream, line in body:
            t.append("\n")
            if stream == "err":
                t.append("err ", style="red dim")
                t.append(line)
            else:
                t.append("out ", style="dim")
                t.append(line)
        return t

    def plain(self) -> str:
        return self.text().plain

    def render(self) -> Text:
        return self.text(self.size.height or None)
