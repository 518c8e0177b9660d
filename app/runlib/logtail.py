"""Incremental reader of a run's plain-text logs (stdout.log, stderr.log written by app.supervise).

Like :class:`app.runlib.tail.JsonlTail` but for text: remember a byte offset, read only what was
appended since (at most ``READ_CAP`` bytes a call: a log that grew more than that is skipped to
its last ``READ_CAP`` bytes and the skip is said in a line of its own), keep a partial last line
for later, keep only the last ``KEEP`` lines. Files are opened through ``safeio.open_fd`` (no
symbolic link followed, no blocking on a FIFO, regular files only); a refused file is reported in
``refused``, never read. A file truncated or replaced (another inode) is read again from its
start. Every line is cleaned for a terminal (``safeio.clean``); a carriage return keeps only
what follows it, as a terminal would show a progress bar. Nothing here raises for bad content.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

from .safeio import Refused, clean, open_fd

READ_CAP = 256 * 1024  # bytes read per call at most (the first read takes the file's last READ_CAP)
KEEP = 1000  # lines kept per run (both streams together)
MAX_LINE = 4096  # bytes of one line kept; a longer one is cut there (the rest of it dropped)
STREAMS = {"out": "stdout.log", "err": "stderr.log"}


class TextTail:
    """New complete lines appended to one text file since the last :meth:`read_new`."""

    def __init__(self, path: str | os.PathLike, read_cap: int = READ_CAP, max_line: int = MAX_LINE):
        self.path = Path(path)
        self.read_cap = read_cap
        self.max_line = max_line
        self.offset = 0
        self.partial = b""  # the last line so far, not yet ended by a newline
        self.refused = ""  # why the file is not read (a link, a FIFO, a directory...), or ""
        self.skipped = 0  # bytes never read because the file grew faster than READ_CAP a call
        self._ident: tuple[int, int] | None = None
        self._cut = False  # inside a line longer than max_line: drop bytes until its newline

    def read_new(self) -> list[str]:
        """Complete lines appended since the last call, cleaned for a terminal (a skip or a
        restart of the file is a line of its own, in brackets)."""
        try:
            fd = open_fd(self.path)
        except Refused as e:
            self.refused = str(e)
            return []
        except OSError:  # not there (yet), or unreadable: nothing new
            return []
        self.refused = ""
        out: list[str] = []
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if self._ident is not None and (ident != self._ident or st.st_size < self.offset):
                out.append(f"[{self.path.name} was truncated or replaced; reading it again from its start]")
                self.offset, self.partial, self._cut = 0, b"", False
            self._ident = ident
            if st.st_size <= self.offset:
                return out
            start = self.offset
            if st.st_size - start > self.read_cap:
                start = st.st_size - self.read_cap
                self.skipped += start - self.offset
                out.append(f"[{start - self.offset:,} bytes of {self.path.name} not shown]")
                self.partial, self._cut = b"", True  # the first line read is probably cut: dropped
            data = os.pread(fd, st.st_size - start, start)
        finally:
            os.close(fd)
        self.offset = start + len(data)
        parts = data.split(b"\n")
        for i, piece in enumerate(parts):
            last = i == len(parts) - 1
            if self._cut:
                if not last:
                    self._cut = False  # the dropped line ended here
                continue
            line = self.partial + piece
            if last:
                self.partial = line[: self.max_line]
                self._cut = len(line) > self.max_line
                if self._cut:  # a huge line without a newline: show what is kept, drop the rest
                    out.append(self._text(self.partial) + " [line cut]")
                    self.partial = b""
                continue
            self.partial = b""
            out.append(self._text(line[: self.max_line]) + (" [line cut]" if len(line) > self.max_line else ""))
        return out

    def pending(self) -> str:
        """The partial last line (a crashed writer's last words may lack a newline), cleaned."""
        return self._text(self.partial) if self.partial else ""

    @staticmethod
    def _text(b: bytes) -> str:
        s = b.decode("utf-8", errors="replace").rstrip("\r")
        if "\r" in s:
            s = s.rsplit("\r", 1)[1]
        return clean(s.expandtabs(4))


class RunLogs:
    """The trainer's output of one run directory: stdout.log and stderr.log, in the order read.

    ``lines`` holds ``(stream, text)`` pairs, ``stream`` being "out" or "err", the last ``keep``
    of them. Call :meth:`read` as often as wanted: an idle call costs an ``open`` and an ``fstat``
    per file.
    """

    def __init__(self, run_dir: str | os.PathLike, keep: int = KEEP, read_cap: int = READ_CAP):
        self.run_dir = Path(run_dir)
        self.tails = {stream: TextTail(self.run_dir / name, read_cap) for stream, name in STREAMS.items()}
        self.lines: deque[tuple[str, str]] = deque(maxlen=keep)

    def read(self) -> bool:
        """Read what both logs gained; True if anything shown changed."""
        changed = False
        for stream, tail in self.tails.items():
            before = (tail.refused, tail.partial)
            new = tail.read_new()
            self.lines.extend((stream, x) for x in new)
            changed = changed or bool(new) or before != (tail.refused, tail.partial)
        return changed

    def snapshot(self, n: int = KEEP) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
        """The last ``n`` lines (partial last lines included, last) and the notes on refused files."""
        lines = list(self.lines)[-n:]
        lines += [(s, t.pending()) for s, t in self.tails.items() if t.partial]
        notes = tuple(t.refused for t in self.tails.values() if t.refused)
        return tuple(lines[-n:]), notes
