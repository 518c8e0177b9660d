"""Reading control.jsonl on the trainer side (docs/control.md).

Cheap enough to call at every optimizer step: one ``os.stat``; the file is read only when it
grew, from the last offset, keeping a partial last line for later. Pure Python, no torch.
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.core.live import COMMANDS
from trainer.runfiles import UnsafeFile, open_regular

MAX_LINE = 1 << 20  # a control line longer than 1 MiB is refused, not buffered forever
READ_CHUNK = 8 << 20  # at most this much is read per poll; the rest at the next one
MAX_MERGED = 16  # commands recovered from one line that several writers appended onto
MAX_TRIES = 64  # places tried as the start of a recovered command, per line


@dataclass
class Incoming:
    """One control line: either a parsed command or the reason it cannot be one."""

    line: int
    cmd: dict[str, Any] | None = None
    error: str | None = None
    id: str | None = None

    def to_wire(self) -> dict:
        return {"line": self.line, "cmd": self.cmd, "error": self.error, "id": self.id}

    @classmethod
    def from_wire(cls, d: dict) -> "Incoming":
        return cls(**d)


def parse_line(raw: bytes, line_no: int) -> Incoming:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return Incoming(line_no, error=f"line {line_no} is not valid JSON ({type(e).__name__})")
    except RecursionError:
        return Incoming(line_no, error=f"line {line_no} is not valid JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return Incoming(line_no, error=f"line {line_no} is not a JSON object")
    cid = obj.get("id")
    if not isinstance(cid, str) or not cid or len(cid) > 200:
        return Incoming(line_no, error="command has no 'id' (a non-empty string)")
    if obj.get("v", 1) != 1:
        return Incoming(line_no, id=cid, error=f"unsupported protocol version {obj.get('v')!r} (this trainer speaks 1)")
    cmd = obj.get("cmd")
    if cmd not in COMMANDS:
        return Incoming(line_no, id=cid, error=f"unknown command {cmd!r} (allowed: {', '.join(COMMANDS)})")
    return Incoming(line_no, cmd=obj, id=cid)


def parse_physical_line(raw: bytes, line_no: int) -> list[Incoming]:
    """One line of the file, which is normally one command.

    A writer that died mid-line leaves a fragment without its newline; a later writer that
    appends without first ending that line (docs/control.md forbids it, but not every program
    obeys) merges its command onto the fragment. The line is then not JSON: the commands that
    follow the fragment are recovered and answered, and the fragment itself is answered with a
    nack by line number, so no command is left unanswered.
    """
    first = parse_line(raw, line_no)
    if first.error is None or first.id is not None:
        return [first]
    fragment, found = _recover(raw)
    if not found:
        return [first]
    out = []
    if fragment.strip():
        out.append(Incoming(line_no, error=(
            f"line {line_no} starts with {len(fragment)} characters that are not a command (a fragment a writer "
            "left unfinished, merged with the command written after it); the command(s) after it on this line are answered")))
    out.extend(parse_line(chunk, line_no) for chunk in found)
    return out


def _recover(raw: bytes) -> tuple[str, list[bytes]]:
    """The whole objects that end a line that is not one JSON object: (the text before them,
    each object's bytes).

    Tries the places where a command can start (the line start, then each ``{"``), leftmost
    first, and takes the first from which the rest of the line is one or more JSON objects,
    each with a string ``id``. No objects when there is none (the line is then nacked as a whole).
    """
    text = raw.decode("utf-8", "replace")
    starts = [0]
    pos = 0
    while len(starts) < MAX_TRIES:
        pos = text.find('{"', pos + 1)
        if pos < 0:
            break
        starts.append(pos)
    for start in starts:
        spans = _objects_to_end(text, start)
        if spans:
            return text[:start], [text[a:b].encode("utf-8") for a, b in spans]
    return text, []


def _objects_to_end(text: str, pos: int) -> list[tuple[int, int]]:
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r":
            pos += 1
        if pos == len(text):
            return spans
        if text[pos] != "{" or len(spans) == MAX_MERGED:
            return []
        try:
            obj, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return []
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return []
        spans.append((pos, end))
        pos = end


@dataclass
class ControlReader:
    path: Path
    offset: int = 0
    line_no: int = 0
    _partial: bytes = b""
    _skipping: bool = False  # inside an over-long line
    refused: str | None = None  # why the file is not trusted right now
    resets: int = 0  # times the file was found truncated or replaced and read again from byte 0
    _inode: int | None = field(default=None, repr=False)

    def trust_problem(self, st: os.stat_result) -> str | None:
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return f"{self.path} is owned by uid {st.st_uid}, not by this trainer's user ({os.getuid()})"
        if st.st_mode & (stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            return f"{self.path} is writable by group or others (mode {oct(st.st_mode & 0o777)}); run chmod 600 on it"
        return None

    # --- resume -------------------------------------------------------------------------------
    def position(self) -> dict[str, Any]:
        """Where the lines handled so far end (saved in checkpoints): a resumed reader starts
        there instead of at byte 0, so it never meets the commands answered before."""
        return {"offset": self.offset - len(self._partial), "line_no": self.line_no, "skipping": self._skipping}

    def seek(self, pos: Any) -> bool:
        """Continue after a saved :meth:`position` if the file still holds it (same or longer,
        a line boundary there); otherwise read from byte 0. Returns whether it continued."""
        if not isinstance(pos, dict):
            return False
        off, line_no, skipping = pos.get("offset"), pos.get("line_no"), pos.get("skipping", False)
        if not (isinstance(off, int) and isinstance(line_no, int) and off > 0 and line_no >= 0
                and isinstance(skipping, bool)) or isinstance(off, bool) or isinstance(line_no, bool):
            return False
        try:
            fd = open_regular(self.path)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_size < off or (not skipping and os.pread(fd, 1, off - 1) != b"\n"):
                return False
            self._inode = st.st_ino
        finally:
            os.close(fd)
        self.offset, self.line_no, self._skipping, self._partial = off, line_no, skipping, b""
        return True

    # --- reading ------------------------------------------------------------------------------
    def poll(self) -> tuple[list[Incoming], str | None]:
        """New complete lines since the last call, and a newly detected problem (or None).

        The file is opened without following a link and without blocking; a FIFO, directory or
        link in its place, or a file others could write, is a problem reported once (and the
        file is not read until it is fixed)."""
        try:
            fd = open_regular(self.path)
        except FileNotFoundError:
            return [], None
        except UnsafeFile as e:
            return [], self._problem(str(e))
        try:
            st = os.fstat(fd)
            problem = self.trust_problem(st)
            if problem:
                return [], self._problem(problem)
            self.refused = None
            if st.st_size <= self.offset and st.st_ino == self._inode:
                return [], None
            replaced = self._inode is not None and st.st_ino != self._inode
            self._inode = st.st_ino
            if st.st_size < self.offset or replaced:
                # truncated or replaced: read it again from the start; answered ids stay answered
                self.offset, self.line_no, self._partial, self._skipping = 0, 0, b"", False
                self.resets += 1
            data = os.pread(fd, min(st.st_size - self.offset, READ_CHUNK), self.offset)
        finally:
            os.close(fd)
        self.offset += len(data)
        return self._split(data), None

    def _problem(self, problem: str) -> str | None:
        new = problem if problem != self.refused else None
        self.refused = problem
        return new

    def _split(self, data: bytes) -> list[Incoming]:
        out: list[Incoming] = []
        pieces = data.split(b"\n")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if self._skipping:
                if not last:
                    self._skipping = False
                continue
            if last:
                self._partial += piece
                if len(self._partial) > MAX_LINE:
                    self.line_no += 1
                    out.append(Incoming(self.line_no, error=f"line {self.line_no} is longer than {MAX_LINE} bytes"))
                    self._partial, self._skipping = b"", True
                continue
            raw, self._partial = self._partial + piece, b""
            self.line_no += 1
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE:
                out.append(Incoming(self.line_no, error=f"line {self.line_no} is longer than {MAX_LINE} bytes"))
                continue
            out.extend(parse_physical_line(raw, self.line_no))
        return out
