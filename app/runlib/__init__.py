"""The run library: follow run directories and steer their trainers (docs/runlib.md).

Pure Python, never imports torch: the cockpit and the CLI verbs are built on it.
"""

from .find import RunNotFound, default_runs_dir, list_runs, resolve_run
from .run import COMMANDS, ControlFileError, Run
from .state import ENDED, Adjustment, RunState, StepPoint, describe_exit
from .tail import JsonlTail

__all__ = [
    "Adjustment", "COMMANDS", "ControlFileError", "ENDED", "JsonlTail", "Run", "RunNotFound", "RunState",
    "StepPoint", "default_runs_dir", "describe_exit", "list_runs", "resolve_run",
]
