"""Incremental reader of an append-only JSONL file (events.jsonl, control.jsonl).

In the style of Textualize/toolong: remember a byte offset, ``os.stat`` first and return at
once when nothing grew, read only the new bytes (in chunks, never the whole file at once), keep
a partial last line for later. Robust against what a crashed or hostile writer leaves behind:
lines that do not parse, binary garbage, a single enormous line, a file truncated or replaced
under us, a file that does not exist yet. Nothing here raises for bad content.
"""

from __future__ import annotations

import json
import json.scanner
import os
from pathlib import Path

from .safeio import Refused, open_fd

MAX_LINE = 1 << 20  # a longer line is skipped and counted, never held in memory whole
CHUNK = 1 << 20  # bytes per read() call
_scan = json.scanner.make_scanner(json.JSONDecoder())
_HEAD = 64  # bytes of the file's start remembered to notice a rewrite that did not shrink it
_STEP_MARKS = ('"type":"step"', '"type": "step"')  # the trainer's compact form, and json.dumps' default
SKIM_KEEP = 256  # while skimming, one step line in this many is parsed anyway (the loss plot's points)


class Skipped(dict):
    """Stands in :meth:`JsonlTail.read_new`'s list for ``n`` step lines that were skimmed, not parsed."""

    def __init__(self, n: int):
        super().__init__(type="_skipped", n=n)
        self.n = n


def is_step_line(line: str) -> bool:
    """A step event by a byte check, without parsing: the line names ``"type":"step"`` once and
    holds no other ``"type"`` key (a nested object's ``type`` cannot pass for the event's)."""
    return (_STEP_MARKS[0] in line or _STEP_MARKS[1] in line) and line.count('"type"') == 1


class JsonlTail:
    """Read new JSON objects appended to ``path`` since the last call.

    Attributes (read them freely):

    - ``offset``: bytes consumed so far (a partial last line is consumed but kept in memory);
    - ``line_no``: newline-terminated lines seen so far (1-based numbers, blank lines included,
      the same numbering as the trainer's control reader);
    - ``bad_lines`` / ``last_error``: lines that did not parse, were not JSON objects, or were
      longer than ``max_line`` bytes;
    - ``resets``: how many times the file was found truncated or replaced; ``was_reset`` is set
      when the last ``read_new`` restarted from byte 0 (the caller should rebuild whatever it
      derived from earlier lines); it stays set until the next read;
    - ``more``: the last read stopped at ``max_bytes`` before the end of the file;
    - ``skim_until``: step lines of chunks that end before this byte offset are skimmed: counted
      (``skimmed``), one in ``SKIM_KEEP`` parsed, the others left as one :class:`Skipped` marker
      per run of them in the returned list (docs/run-directory.md, "Attaching to a long record").
    """

    def __init__(self, path: str | os.PathLike, max_line: int = MAX_LINE, chunk: int = CHUNK):
        self.path = Path(path)
        self.max_line = max_line
        self.chunk = chunk
        self.offset = 0
        self.line_no = 0
        self.bad_lines = 0
        self.last_error = ""
        self.resets = 0
        self.was_reset = False
        self.more = False
        self.missing = False  # the file was not there at the last read
        self.refused = ""  # why the file was not read (a FIFO, a directory, a link...), or ""
        self._partial = bytearray()
        self._skipping = False  # inside a line longer than max_line: drop bytes until '\n'
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file being read
        self._head = b""
        self.skim_until = 0
        self.skimmed = 0

    # -- public -------------------------------------------------------------------------

    def read_new(self, max_bytes: int | None = None) -> list[dict]:
        """New complete JSON objects, in file order ([] cheaply when the file did not grow)."""
        return [obj for _, obj in self._read(max_bytes)]

    def read_new_numbered(self, max_bytes: int | None = None) -> list[tuple[int, dict]]:
        """Like :meth:`read_new`, with each object's 1-based line number."""
        return self._read(max_bytes)

    def rewind(self) -> None:
        """Start again from byte 0 with fresh counters (``resets`` is kept)."""
        self.offset = 0
        self.line_no = 0
        self.bad_lines = 0
        self.last_error = ""
        self.was_reset = False
        self.more = False
        self._partial = bytearray()
        self._skipping = False
        self._ident = None
        self._head = b""
        self.skim_until = 0
        self.skimmed = 0

    @property
    def partial_bytes(self) -> int:
        """Bytes of an unterminated last line held for later."""
        return len(self._partial)

    # -- internals ----------------------------------------------------------------------

    def _reset(self) -> None:
        resets = self.resets + 1
        self.rewind()
        self.resets = resets
        self.was_reset = True

    def _read(self, max_bytes: int | None) -> list[tuple[int, dict]]:
        self.was_reset = False
        self.more = False
        try:
            st = os.lstat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            self.missing = True
            return []  # not there (yet): empty; a file that reappears is noticed by its inode
        except OSError as e:
            self.last_error = f"{self.path}: {e.strerror or e}"
            return []
        self.missing = False
        ident = (st.st_dev, st.st_ino)
        if self._ident is not None and (ident != self._ident or st.st_size < self.offset):
            self._reset()
        if st.st_size == self.offset and self._ident is not None:
            return []
        try:
            fd = open_fd(self.path)  # a regular file only: never a FIFO (it would hang), a link, a folder
        except Refused as e:
            self.refused = str(e)
            return []
        except OSError as e:
            self.last_error = f"{self.path}: {e.strerror or e}"
            return []
        self.refused = ""
        out: list[tuple[int, dict]] = []
        try:
            if self.offset and self._head and os.pread(fd, len(self._head), 0) != self._head:
                self._reset()  # rewritten in place to at least the old size
            self._ident = ident
            end = os.fstat(fd).st_size
            if end < self.offset:
                self._reset()
                self._ident = ident
            budget = end - self.offset
            if max_bytes is not None and max_bytes < budget:
                budget = max(int(max_bytes), 1)
                self.more = True
            while budget > 0:
                data = os.pread(fd, min(self.chunk, budget), self.offset)
                if not data:
                    break
                self.offset += len(data)
                budget -= len(data)
                self._feed(data, out)
            if len(self._head) < _HEAD and self.offset > len(self._head):
                self._head = os.pread(fd, min(_HEAD, self.offset), 0)
        finally:
            os.close(fd)
        return out

    def _feed(self, data: bytes, out: list[tuple[int, dict]]) -> None:
        pos = 0
        if self._skipping:  # the rest of an over-long line, up to its newline
            i = data.find(b"\n")
            if i < 0:
                return
            self.line_no += 1
            self._skipping = False
            self._bad(f"line {self.line_no} is longer than {self.max_line} bytes; skipped")
            pos = i + 1
        nl = data.rfind(b"\n")
        skim = self.offset <= self.skim_until  # this whole chunk lies before the tail parsed in full
        if nl >= pos:
            block = data[pos:nl]
            if self._partial:
                block = bytes(self._partial) + block
                self._partial = bytearray()
            # one decode per chunk ('\n' never occurs inside a UTF-8 sequence): bad bytes -> U+FFFD
            skipped, m0, m1 = 0, _STEP_MARKS[0], _STEP_MARKS[1]
            for line in block.decode("utf-8", errors="replace").split("\n"):
                self.line_no += 1
                if len(line) > self.max_line:
                    self._bad(f"line {self.line_no} is longer than {self.max_line} bytes; skipped")
                    continue
                if skim and (m0 in line or m1 in line) and line.count('"type"') == 1:  # is_step_line
                    self.skimmed += 1
                    if self.skimmed % SKIM_KEEP:
                        skipped += 1
                        continue
                if skipped:
                    out.append((self.line_no - 1, Skipped(skipped)))
                    skipped = 0
                obj = self._parse(line)
                if obj is not None:
                    out.append((self.line_no, obj))
            if skipped:
                out.append((self.line_no, Skipped(skipped)))
            pos = nl + 1
        if pos < len(data):
            self._partial += data[pos:]
            if len(self._partial) > self.max_line:
                self._partial = bytearray()
                self._skipping = True

    def _parse(self, line: str) -> dict | None:
        try:
            obj, end = _scan(line, 0)  # the C scanner json.loads uses, minus its per-call overhead
            if end != len(line) and line[end:].strip():
                raise ValueError("extra data after the object")
        except StopIteration:  # leading whitespace, blank line, or not JSON at all
            if not line.strip():
                return None
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                return self._bad_parse(line, e)
        except (ValueError, RecursionError) as e:
            return self._bad_parse(line, e)
        if type(obj) is not dict:
            self._bad(f"line {self.line_no} is not a JSON object ({type(obj).__name__})")
            return None
        return obj

    def _bad_parse(self, line: str, e: Exception) -> None:
        self._bad(f"line {self.line_no} is not valid JSON ({type(e).__name__})")
        return None

    def _bad(self, msg: str) -> None:
        self.bad_lines += 1
        self.last_error = msg
