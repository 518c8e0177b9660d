"""The run record: events.jsonl writer, meta.json, atomic file writes (docs/run-directory.md).

Pure Python, no torch: every event is one whole line, written with a single ``write`` on an
O_APPEND descriptor and flushed, so a reader never sees half an event except at a crash, and a
resumed writer terminates a torn last line before writing.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from trainer.runfiles import UnsafeFile, open_regular

SCHEMA_VERSION = 1
MAX_EVENT_LINE = 1 << 20  # longer lines in events.jsonl are not events: skipped when read back


def atomic_write_bytes(path: Path, data: bytes, midway: Callable[[], None] | None = None) -> None:
    """Write a file so that readers see the old or the new content, never a torn one.

    The bytes go to a temp file next to ``path`` (``.NAME.*.tmp``), are fsynced, then renamed
    over ``path``. On any error the temp file is removed; a process killed meanwhile leaves it
    behind (``remove_stale_temps`` clears them). ``midway`` (fault injection for tests) is called
    after the first half of the bytes is written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if midway is not None:
                f.write(data[:len(data) // 2])
                f.flush()
                midway()
                f.write(data[len(data) // 2:])
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(folder: Path) -> list[str]:
    """Remove the temp files of atomic writes a killed process left in ``folder``; their names."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        try:
            p.unlink()
            removed.append(p.name)
        except FileNotFoundError:
            continue
    return removed


def _clean(value: Any, key: str, nonfinite: list[str]) -> Any:
    """Replace NaN/Inf by None (JSON has none) and remember which keys held them."""
    if isinstance(value, float) and not math.isfinite(value):
        nonfinite.append(key)
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{key}.{k}" if key else k, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, key, nonfinite) for v in value]
    return value


def last_seq_and_tail(path: Path, chunk: int = 1 << 16) -> tuple[int, bool]:
    """Return (highest seq found in the file's last lines, whether the file ends mid-line).

    Reads backwards from the end only as far as needed to find one parseable event line.
    """
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return -1, False
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size == 0:
            return -1, False
        f.seek(size - 1)
        torn = f.read(1) != b"\n"
        pos, buf = size, b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            lines = buf.split(b"\n")
            # the first piece may be a partial line unless we reached the file start
            candidates = lines if pos == 0 else lines[1:]
            for raw in reversed(candidates):
                try:
                    ev = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(ev, dict) and isinstance(ev.get("seq"), int):
                    return ev["seq"], torn
    return -1, torn


class EventWriter:
    """Appends schema-versioned events with a monotonic ``seq`` that continues across resume."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._fd: int | None = None
        self._refused: str | None = None
        self.seq = -1
        if not enabled:
            return
        last, torn = last_seq_and_tail(self.path)
        self.seq = last
        self._open(torn)

    def _open(self, torn: bool) -> None:
        # never through a symbolic link, never into a FIFO: UnsafeFile names the file
        self._fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        if torn:  # a crash left half a line: end it so the next event starts clean
            os.write(self._fd, b"\n")

    def _reopen_if_replaced(self) -> bool:
        """events.jsonl deleted or replaced under the running trainer: write on in the file now
        at that path (one os.lstat per event), so the monitors that read it lose nothing more.
        A link, FIFO or directory put in its place is never followed (stderr says so once)."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._ident:
                return False
            if not stat.S_ISREG(st.st_mode):  # a link, FIFO or directory put there: not followed
                self._say_refused(f"{self.path} was replaced by something that is not a regular file")
                return False
        except FileNotFoundError:
            pass
        fd, ident = self._fd, self._ident
        try:
            _, torn = last_seq_and_tail(self.path)
            self._open(torn)
        except UnsafeFile as e:  # replaced again between the lstat and the open
            self._fd, self._ident = fd, ident
            self._say_refused(str(e))
            return False
        os.close(fd)
        self._refused = None
        return True

    def _say_refused(self, why: str) -> None:
        """The trainer's stderr (stderr.log) is the only place left to say it: once per cause."""
        if why != self._refused:
            self._refused = why
            print(f"segwatch trainer: {why}; not followed: events go on into the file the trainer had open "
                  "(no longer at that path) until a regular file is back", file=sys.stderr, flush=True)

    def emit(self, type_: str, **fields: Any) -> dict:
        if self._fd is not None and self._reopen_if_replaced():
            self.emit("warning", code="record_replaced", epoch=None, step=None,
                      message=f"{self.path.name} was deleted or replaced while the trainer ran; "
                              "writing on in the file now there (earlier events are not in it)")
        self.seq += 1
        nonfinite: list[str] = []
        body = {k: _clean(v, k, nonfinite) for k, v in fields.items()}
        event = {"v": SCHEMA_VERSION, "seq": self.seq, "t": round(time.time(), 4), "type": type_, **body}
        if nonfinite:
            event["nonfinite"] = sorted(set(nonfinite))
        if self._fd is not None:
            line = json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n"
            os.write(self._fd, line.encode("utf-8"))
        return event

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_events(path: Path, skipped: list[int] | None = None) -> list[dict]:
    """All parseable events of a record, in file order (used on resume and in tests). The number of
    lines that are not events (unparseable, too long, not an object) is appended to ``skipped``."""
    out, bad = [], 0
    try:
        fd = open_regular(path)  # UnsafeFile for a link, FIFO or directory
    except FileNotFoundError:
        return out
    with os.fdopen(fd, "rb") as f:
        while True:
            raw = f.readline(MAX_EVENT_LINE + 1)
            if not raw:
                break
            if len(raw) > MAX_EVENT_LINE:  # not an event of this trainer: skip to the line's end
                while raw and not raw.endswith(b"\n"):
                    raw = f.readline(MAX_EVENT_LINE + 1)
                bad += 1
                continue
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                bad += 1
                continue
            if isinstance(ev, dict):
                out.append(ev)
            else:
                bad += 1
    if skipped is not None:
        skipped.append(bad)
    return out
