"""Opening files of an untrusted run directory, and text from them, safely.

A run directory may have been touched by other people and other programs (docs/trust.md). Every
file the app reads or appends to in one goes through here:

- opened without following a symbolic link (``O_NOFOLLOW``) and without blocking
  (``O_NONBLOCK``: a FIFO never hangs ``open`` or ``read``), then ``fstat``-checked to be a
  regular file; anything else (FIFO, directory, socket, device, link) raises :class:`Refused`
  naming the file and what it is;
- read size-capped (a file larger than its cap is refused, never read whole);
- JSON and YAML depth-capped before and after parsing (no ``RecursionError``), YAML also
  node-capped (aliases cannot blow a small file up into a huge walk).

:func:`clean` makes text from files safe for a terminal: control characters and escape
sequences are shown as ``\\x1b``-style escapes, never sent raw.

Pure standard library plus PyYAML; no torch.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat as stat_mod
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 32  # nesting of any JSON/YAML document in a run directory (ours are <= 4 deep)
MAX_NODES = 200_000  # values in one YAML document after aliases
SMALL = 64 * 1024  # exit.json, trainer.pid
MEDIUM = 1 << 20  # meta.json, a run's plan.json
YAML_CAP = 256 * 1024  # config.yaml (a resolved config is ~2 KB; the pure-Python parser is slow)
LARGE = 16 << 20  # a plan file (plans/<plan>.json) of a big sweep

_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat_mod.S_ISDIR, "a directory"), (stat_mod.S_ISFIFO, "a FIFO (named pipe)"),
          (stat_mod.S_ISSOCK, "a socket"), (stat_mod.S_ISCHR, "a character device"),
          (stat_mod.S_ISBLK, "a block device"), (stat_mod.S_ISLNK, "a symbolic link"))


class Refused(OSError):
    """A run-directory file that is not a regular file, is too large, or is nested too deep.

    ``str()`` is one line naming the file and what is wrong; ``name`` is the file's name.
    """

    def __init__(self, path: str | os.PathLike, why: str):
        self.path = Path(path)
        self.why = why
        super().__init__(f"{self.path.name} {why}; skipped")

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        return f"{clean(self.path.name)} {self.why}; skipped"


def kind_of(mode: int) -> str:
    for test, what in _KINDS:
        if test(mode):
            return what
    return "not a regular file"


def open_fd(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """``os.open`` that refuses anything but a regular file (no link, no FIFO, no directory).

    Raises :class:`Refused` for those; ``FileNotFoundError`` and other ``OSError`` as usual.
    """
    try:
        fd = os.open(path, flags | _FLAGS, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(path, "is a symbolic link (links are not followed in a run directory)") from None
        if e.errno == errno.ENXIO:  # O_WRONLY|O_NONBLOCK on a FIFO nobody reads
            raise Refused(path, "is a FIFO (named pipe), not a regular file") from None
        if e.errno == errno.EISDIR:
            raise Refused(path, "is a directory, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(fd)
        raise Refused(path, f"is {kind_of(st.st_mode)}, not a regular file")
    return fd


def read_bytes(path: str | os.PathLike, max_bytes: int = MEDIUM) -> bytes:
    """The whole file, if it is a regular file of at most ``max_bytes``; else :class:`Refused`."""
    fd = open_fd(path)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise Refused(path, f"is {size:,} bytes (at most {max_bytes:,} are read)")
        chunks, got = [], 0
        while got <= max_bytes:
            b = os.read(fd, min(1 << 20, max_bytes + 1 - got))
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got > max_bytes:  # grew while we read it
            raise Refused(path, f"is more than {max_bytes:,} bytes (at most {max_bytes:,} are read)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_tail(path: str | os.PathLike, max_bytes: int) -> tuple[bytes, bool]:
    """The last ``max_bytes`` of a regular file, and whether that is the whole file."""
    fd = open_fd(path)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        return os.pread(fd, size - start, start), start == 0
    finally:
        os.close(fd)


# -- structured files ------------------------------------------------------------------------

def text_depth(data: bytes) -> int:
    """Deepest bracket nesting (``[``/``{``) outside JSON strings: a cheap check before parsing."""
    depth = deepest = 0
    for m in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', data):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
        elif c in (b"]", b"}"):
            depth = max(0, depth - 1)
    return deepest


def value_depth(obj: Any, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> int:
    """Nesting depth of a parsed value, walked without recursion; stops past the caps."""
    todo = [(obj, 1)]
    deepest = nodes = 0
    seen: set[int] = set()
    while todo:
        v, d = todo.pop()
        nodes += 1
        deepest = max(deepest, d)
        if deepest > max_depth or nodes > max_nodes:
            return max(deepest, max_depth + 1)
        if isinstance(v, (dict, list)):
            if id(v) in seen:  # a YAML alias: counted once
                continue
            seen.add(id(v))
            kids = v.values() if isinstance(v, dict) else v
            todo.extend((k, d + 1) for k in kids if isinstance(k, (dict, list)))
            nodes += len(v)
    return deepest


def _check_depth(path: str | os.PathLike, data: bytes, max_depth: int) -> None:
    if text_depth(data) > max_depth:
        raise Refused(path, f"is nested more than {max_depth} levels deep")


def parse_json(path: str | os.PathLike, data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from ``data`` read from ``path``: ValueError if not JSON, Refused if too deep."""
    _check_depth(path, data, max_depth)
    try:
        return json.loads(data)
    except RecursionError:
        raise Refused(path, f"is nested more than {max_depth} levels deep") from None


def load_json(path: str | os.PathLike, max_bytes: int = MEDIUM, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON file of a run directory. Refused / OSError / ValueError on failure."""
    return parse_json(path, read_bytes(path, max_bytes), max_depth)


def load_yaml(path: str | os.PathLike, max_bytes: int = YAML_CAP, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a YAML file of a run directory (safe loader). Refused / OSError / yaml.YAMLError."""
    data = read_bytes(path, max_bytes)
    _check_depth(path, data, max_depth)  # flow style: [[[...]]]
    if _indent_depth(data) > max_depth * 8:
        raise Refused(path, f"is nested more than {max_depth} levels deep")
    try:
        obj = yaml.safe_load(data.decode("utf-8", errors="replace"))
    except RecursionError:
        raise Refused(path, f"is nested more than {max_depth} levels deep") from None
    if value_depth(obj, max_depth) > max_depth:
        raise Refused(path, f"is nested more than {max_depth} levels deep (or has more than {MAX_NODES:,} values)")
    return obj


def _indent_depth(data: bytes) -> int:
    """The widest leading indentation of a line: block-style YAML nests by indenting."""
    widest = 0
    for m in re.finditer(rb"^[ \t-]+", data, re.M):
        widest = max(widest, len(m.group()))
    return widest


# -- text for a terminal ---------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_NL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean(text: Any, *, newlines: bool = False) -> str:
    """``text`` with every control character (ESC, CR, BEL, C1, bidi overrides...) shown as an
    escape like ``\\x1b``; newlines and tabs too unless ``newlines`` (then only those two stay)."""
    s = text if isinstance(text, str) else str(text)
    pattern = _CONTROL if newlines else _CONTROL_NL
    return pattern.sub(_escape, s) if pattern.search(s) else s


def clean_value(v: Any, depth: int = 0) -> Any:
    """``v`` with every string in it (dict keys too) passed through :func:`clean`."""
    if isinstance(v, str):
        return clean(v)
    if depth > MAX_DEPTH:
        return v
    if isinstance(v, dict):
        return {clean(k) if isinstance(k, str) else k: clean_value(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [clean_value(x, depth + 1) for x in v]
    return v
