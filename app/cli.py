"""The `segwatch` command: a thin dispatcher over the subcommand modules in app/commands/.

Each module in COMMANDS exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` (called with the parsed args, returning the exit code). Imports stay light: no torch,
and Textual only inside the commands that open the UI.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    # modules under app.commands, each with register(subparsers)
    "control",
    "run",
    "plan",
    "predict",
    "evaluate",
    "report",
    "runs",  # ls, rm
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segwatch",
        description="A terminal cockpit for training face-parsing models: start runs, watch them "
        "live against the plan's health rules, and adjust them with one key.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"app.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe raises here, not at the interpreter's exit
        return rc
    except BrokenPipeError:  # `segwatch evaluate ... | head`: the reader left; no traceback
        quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by the closed pipe


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a file: nothing left to flush into
        pass


if __name__ == "__main__":
    sys.exit(main())
