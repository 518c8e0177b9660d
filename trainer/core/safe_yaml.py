"""Reading small YAML files that people write (run configs, health rules) without trusting them.

Pure Python (PyYAML only): a SafeLoader, duplicate keys refused instead of silently keeping the
last, keys that are lists or mappings refused, a size cap, an alias-expansion cap ("billion
laughs"), and one-line errors raised as the caller's own error class, naming the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1 << 20  # a config is a page of YAML; anything larger is refused unread
MAX_VALUES = 100_000  # values once YAML aliases are expanded
MAX_SHOWN = 60  # characters of a bad value or key quoted in an error message


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def typed_value(raw: str) -> Any:
    """A value a person typed (``segwatch set lr=3e-4``, the palette's ``set lr 3e-4``): YAML, plus the
    numbers YAML 1.1 reads as strings ('3e-4' -> 0.0003, also inside lists). Raises yaml.YAMLError."""
    return _numify(yaml.safe_load(raw))


def _numify(v: Any) -> Any:
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        s = v.strip()
        return float(s) if any(c in s for c in ".eE") else int(s)
    if isinstance(v, list):
        return [_numify(x) for x in v]
    return v


def is_number(v: Any, finite: bool = False) -> bool:
    """A real number read from YAML or JSON (a bool is not one); ``finite``: and finite (an int too
    large for a float is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return not finite or math.isfinite(v)
    except OverflowError:
        return False


def as_number(v: Any) -> float | None:
    """``v`` as a float if it is a real number (see `is_number`), else None."""
    return float(v) if is_number(v) else None


class _LoadProblem(ValueError):
    """Raised inside the loader; re-raised by read_yaml_mapping as the caller's error class."""


def show(value: Any) -> str:
    """A bad value (or key) for a one-line message: repr, newlines escaped, long ones cut."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def show_key(key: Any) -> str:
    """A mapping key as written in a message: plain names as they are, anything else quoted."""
    if isinstance(key, str) and key.isprintable() and len(key) <= MAX_SHOWN and key.strip() == key and key:
        return key
    return show(key)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and unhashable keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            dup = key in seen
        except TypeError:  # a list or mapping used as a key ('? [a, b]')
            raise _LoadProblem(f"line {line}: a key must be a plain name, not a {type(key).__name__} ({show(key)})") from None
        if dup:
            raise _LoadProblem(f"duplicate key '{show_key(key)}' (line {line})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def check_size(data: Any) -> None:
    """Refuse more than MAX_VALUES values (raises ValueError): a few lines of anchors can stand for
    billions of values, which copying the document would build."""
    todo, n = [data], 0
    while todo:
        node = todo.pop()
        n += 1
        if n > MAX_VALUES:
            raise _LoadProblem(f"more than {MAX_VALUES} values once YAML aliases are expanded; "
                               "a file like this needs no anchors/aliases at that scale")
        if isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


def read_yaml_mapping(path: str | Path, error: type[Exception], expect: str) -> dict:
    """Read a YAML file whose top level must be a mapping; every problem raises ``error`` with a
    one-line message that starts with the file name. ``expect`` describes the mapping wanted."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise error(f"{p}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{p}: too large (more than {MAX_FILE_BYTES} bytes); expected a page of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        check_size(data)
    except _LoadProblem as e:
        raise error(f"{p}: {e}") from None
    except RecursionError:
        raise error(f"{p}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{p}: invalid YAML{where}: {problem}") from None
    except ValueError as e:  # a value YAML cannot build, e.g. an int of more than 4300 digits
        raise error(f"{p}: invalid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if data is None:
        raise error(f"{p}: the file is empty; expected {expect}")
    if not isinstance(data, dict):
        raise error(f"{p}: expected {expect} at the top level, got a {type(data).__name__}")
    return data
