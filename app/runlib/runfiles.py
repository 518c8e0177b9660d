"""The small files next to a run's record, read through app.runlib.safeio.

config.yaml, meta.json, plan.json, exit.json and the tail of stderr.log: each is read only if it
is a regular file (no FIFO, directory or link), within its size cap and depth cap. A file that is
refused is reported by name in ``notes`` (shown with the run) and skipped; a missing or
unparseable one is skipped as before. Every string read is made safe for a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import safeio


def read_mapping(path: Path, notes: dict[str, str], *, yaml_file: bool = False,
                 max_bytes: int | None = None) -> dict | None:
    """The JSON/YAML mapping in ``path`` with its strings cleaned; None if absent or unusable.

    A file refused by safeio (not a regular file, too big, too deep), one that does not parse or
    holds no mapping is noted in ``notes`` under its name (shown with the run); a later good read
    removes the note.
    """
    try:
        if yaml_file:
            data: Any = safeio.load_yaml(path, max_bytes or safeio.YAML_CAP)
        else:
            data = safeio.load_json(path, max_bytes or safeio.MEDIUM)
    except safeio.Refused as e:
        notes[path.name] = str(e)
        return None
    except FileNotFoundError:
        notes.pop(path.name, None)
        return None
    except (OSError, ValueError, yaml.YAMLError) as e:  # shown with the run, not swallowed
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        notes[path.name] = f"{path.name} cannot be read ({type(e).__name__}: {first}); ignored"
        return None
    if not isinstance(data, dict):
        notes[path.name] = f"{path.name} holds a {type(data).__name__}, not a mapping; ignored"
        return {}
    notes.pop(path.name, None)
    return safeio.clean_value(data)


def stderr_tail(run_dir: Path, n: int, notes: dict[str, str] | None = None, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``n`` non-blank lines of stderr.log (read from its end), cleaned for a terminal."""
    try:
        data, whole = safeio.read_tail(run_dir / "stderr.log", max_bytes)
    except safeio.Refused as e:
        if notes is not None:
            notes["stderr.log"] = str(e)
        return []
    except OSError:
        return []
    lines = [ln.rstrip("\r") for ln in data.decode("utf-8", errors="replace").split("\n")]
    if not whole and lines:
        lines = lines[1:]  # the first one is probably cut
    return [safeio.clean(ln) for ln in lines if ln.strip()][-n:]
