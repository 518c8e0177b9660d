"""Opening files of a run directory as untrusted input (docs/trust.md).

Anyone who can write into a run directory can put a FIFO, a directory or a symbolic link where
the trainer expects a regular file. Every file the trainer reads or appends to in a run
directory is opened here: without following a symbolic link (``O_NOFOLLOW``), without blocking
(``O_NONBLOCK``: opening a FIFO would wait for a writer forever), then checked with ``fstat``
to be a regular file, optionally below a size cap. Anything else raises :class:`UnsafeFile`
whose message names the file and what it is. Pure Python, no torch.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafeFile(OSError):
    """A run-directory file that is not a regular file (or is too large); the message names it."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def describe(path: Path) -> str | None:
    """Why ``path`` is not a plain regular file (without following links), or None if it is one
    or does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    return f"{path} is {_kind(st.st_mode)}, not a regular file"


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644, max_bytes: int | None = None) -> int:
    """``os.open`` for a run-directory file: no link followed, never blocks, regular files only.

    Returns the descriptor (blocking mode restored). Raises FileNotFoundError when the file is
    missing (and ``flags`` has no O_CREAT), :class:`UnsafeFile` for a link, FIFO, directory,
    device or a file over ``max_bytes``, and other OSErrors as they come.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeFile(errno.ELOOP, f"{path} is a symbolic link; segwatch does not follow links in a run directory") from None
        if e.errno in (errno.EISDIR, errno.ENXIO):  # a directory; a FIFO opened for writing without a reader
            reason = describe(path) or f"{path} is not a regular file"
            raise UnsafeFile(e.errno, reason) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(errno.EINVAL, f"{path} is {_kind(st.st_mode)}, not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafeFile(errno.EFBIG, f"{path} is {st.st_size:,} bytes, more than the {max_bytes:,} allowed")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_small(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace the content of a small bookkeeping file (trainer.pid) without following a link."""
    path = Path(path)
    if describe(path):  # a link, FIFO or directory where the file should be: remove the link only
        if os.path.islink(path) or stat.S_ISFIFO(os.lstat(path).st_mode):
            os.unlink(path)
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


#: what makes a directory an existing run: a second trainer started there with --config would
#: replace its config, mix two runs' events and overwrite its checkpoints
RUN_MARKERS = ("config.yaml", "events.jsonl", "meta.json", "checkpoints")


def existing_run(run_dir: Path) -> list[str]:
    """The run files already in ``run_dir`` (links and FIFOs count), empty if it holds no run.

    A directory reserved by ``segwatch run`` (empty, or holding only plan.json, logs or commands
    queued in control.jsonl) is not a run yet."""
    return [m for m in RUN_MARKERS if os.path.lexists(Path(run_dir) / m)]
