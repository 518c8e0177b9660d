"""A real terminal for end-to-end tests: tmux on a private socket, screens read with
capture-pane, waits that poll the screen with a deadline (no bare sleeps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest


class Tmux:
    def __init__(self, prefix: str = "segwatch-test") -> None:
        self.socket = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        if check and p.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {p.stderr}")
        return p.stdout

    def screen(self, target: str, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", target)

    def wait(self, target: str, pred, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen(target)
            if pred(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; screen:\n{text}")

    def kill(self) -> None:
        self("kill-server", check=False)


def require_tmux(why: str) -> None:
    if not shutil.which("tmux"):
        pytest.skip(f"tmux is not installed (the CI script .ci/run installs it); {why}")


def shell(cmd: list[str], root: Path, extra_env: str = "") -> str:
    """A shell line for a tmux pane: run ``cmd`` (quoted, never interpreted) from ``root``, print
    its exit status as __EXIT__<rc>, then keep the pane open."""
    q = lambda s: "'" + s.replace("'", "'\\''") + "'"  # noqa: E731
    return (f"cd {q(str(root))} && unset COLUMNS LINES && export PYTHONPATH={q(str(root))} "
            f"TERM=xterm-256color COLORTERM=truecolor {extra_env} && "
            + " ".join(q(c) for c in cmd) + "; echo __EXIT__$?; sleep 600")


def trainer_alive(run_dir: Path) -> bool:
    """Is the run's trainer process (trainer.pid) alive and still a trainer (not a reused pid)?"""
    try:
        pid = int((run_dir / "trainer.pid").read_text())
        os.kill(pid, 0)
        return b"trainer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
