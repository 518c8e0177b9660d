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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
