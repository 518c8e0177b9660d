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

COMMANDS = ("set", "pause", "resume", "stop", "checkpoint")
MAX_LINE = 1 << 20  # a control line longer than 1 MiB is refused, not buffered forever


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


@dataclass
class ControlReader:
    path: Path
    offset: int = 0
    line_no: int = 0
    _partial: bytes = b""
    _skipping: bool = False  # inside an over-long line
    refused: str | None = None  # why the file is not trusted right now
    _inode: int | None = field(default=None, repr=False)

    def trust_problem(self, st: os.stat_result) -> str | None:
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return f"{self.path} is owned by uid {st.st_uid}, not by this trainer's user ({os.getuid()})"
        if st.st_mode & (stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            return f"{self.path} is writable by group or others (mode {oct(st.st_mode & 0o777)}); run chmod 600 on it"
        return None

    def poll(self) -> tuple[list[Incoming], str | None]:
        """New complete lines since the last call, and a newly detected trust problem (or None)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], None
        problem = self.trust_problem(st)
        if problem:
            new = problem if problem != self.refused else None
            self.refused = problem
            return [], new
        self.refused = None
        if st.st_size <= self.offset and st.st_ino == self._inode:
            return [], None
        replaced = self._inode is not None and st.st_ino != self._inode
        self._inode = st.st_ino
        if st.st_size < self.offset or replaced:
            # truncated or replaced: read it again from the start; answered ids stay answered
            self.offset, self.line_no, self._partial, self._skipping = 0, 0, b"", False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        self.offset += len(data)
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
            out.append(parse_line(raw, self.line_no))
        return out, None
