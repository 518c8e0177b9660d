"""Errors raised by the data package (pure Python, no heavy imports)."""

from __future__ import annotations

MAX_LISTED = 10


class DataError(ValueError):
    """A dataset cannot be used as configured.

    The message names the root (and split) and lists the first problems found,
    so a user can fix the data without reading a traceback.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


def data_error(where: str, problems: list[str]) -> DataError:
    """Build a DataError listing up to MAX_LISTED problems for ``where``."""
    shown = problems[:MAX_LISTED]
    lines = [f"{where}: {len(problems)} problem(s)"]
    lines += [f"  - {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return DataError("\n".join(lines), problems)
