"""`t`: the selected run's trainer output (stdout.log, stderr.log) tailed in a pane under the run panes.

The reader (app.runlib.logtail) is tested on real files; the pane against a fake trainer's run
directory whose logs the test appends to, and against a crash written by the real supervisor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _runrecord import Record
from tui_helpers import make_app, wait_for

from app import supervise
from app.runlib.logtail import RunLogs, TextTail
from app.tui.screens.help import HelpScreen

SIZE = (160, 50)


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # a fake trainer's thread may not have made it yet
    with open(path, "ab") as f:
        f.write(data)


# --- the reader -------------------------------------------------------------------------------

def test_text_tail_reads_new_lines_and_keeps_the_partial_one(tmp_path):
    p = tmp_path / "stdout.log"
    t = TextTail(p)
    assert t.read_new() == []  # not there yet
    append(p, b"one\ntw")
    assert t.read_new() == ["one"] and t.pending() == "tw"
    append(p, b"o\r\nbar 10%\rbar 100%\n\x1b[31mred\n")
    assert t.read_new() == ["two", "bar 100%", "\\x1b[31mred"]  # CR keeps what a terminal shows; ESC escaped
    assert t.read_new() == [] and t.pending() == ""


def test_text_tail_skips_to_the_last_bytes_of_a_flood_and_rereads_a_truncated_file(tmp_path):
    p = tmp_path / "stderr.log"
    append(p, b"".join(b"line %06d\n" % i for i in range(100_000)))  # 1.2 MB
    t = TextTail(p, read_cap=64 * 1024)
    lines = t.read_new()
    assert lines[0].startswith("[") and "not shown" in lines[0]
    assert lines[-1] == "line 099999" and all(x.startswith("line ") and len(x) == 11 for x in lines[1:])
    assert t.offset == p.stat().st_size
    p.write_bytes(b"Traceback (most recent call last):\nRuntimeError: boom\n")  # the supervisor's log rewritten
    lines = t.read_new()
    assert "truncated or replaced" in lines[0] and lines[1:] == ["Traceback (most recent call last):", "RuntimeError: boom"]


def test_text_tail_cuts_a_huge_line_and_refuses_a_link(tmp_path):
    p = tmp_path / "stdout.log"
    append(p, b"x" * 10_000 + b"\nafter\n")
    t = TextTail(p, max_line=100)
    assert t.read_new() == ["x" * 100 + " [line cut]", "after"]
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show\n")
    link = tmp_path / "stderr.log"
    link.symlink_to(secret)
    t2 = TextTail(link)
    assert t2.read_new() == [] and "symbolic link" in t2.refused


def test_run_logs_bounds_its_history(tmp_path):
    append(tmp_path / "stdout.log", b"".join(b"%d\n" % i for i in range(5000)))
    logs = RunLogs(tmp_path, keep=100)
    assert logs.read()
    lines, notes = logs.snapshot()
    assert len(lines) == 100 and lines[-1] == ("out", "4999") and notes == ()
    assert not logs.read()  # nothing new: nothing changed


# --- the pane -----------------------------------------------------------------------------------

async def test_t_toggles_the_selected_runs_log_and_follows_it(fake):
    a, b = fake("alpha"), fake("beta")
    append(a.run_dir / "stdout.log", b"alpha says hello\n")
    append(b.run_dir / "stderr.log", b"beta warns\n")
    app = make_app([a.run_dir, b.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        assert not app.log_pane.display
        await pilot.press("t")
        assert app.log_pane.display
        await wait_for(pilot, lambda: "out alpha says hello" in app.log_pane.plain(), 10, "alpha's stdout")
        append(a.run_dir / "stderr.log", b"half a li")
        await wait_for(pilot, lambda: "err half a li" in app.log_pane.plain(), 10, "the partial line")
        append(a.run_dir / "stderr.log", b"ne\n")
        await wait_for(pilot, lambda: "err half a line" in app.log_pane.plain(), 10, "the completed line")
        assert app.log_pane.plain().count("half a li") == 1
        await pilot.press("2")
        await wait_for(pilot, lambda: "err beta warns" in app.log_pane.plain(), 10, "beta's stderr")
        assert "alpha" not in app.log_pane.plain() and "beta" in app.log_pane.plain()
        await pilot.press("t")
        assert not app.log_pane.display
        # what the screen draws: the newest lines that fit, under the title
        await pilot.press("t")
        append(b.run_dir / "stdout.log", b"".join(b"row %d\n" % i for i in range(200)))
        await wait_for(pilot, lambda: "out row 199" in app.log_pane.plain(), 10, "row 199")
        await pilot.pause(0.2)
        shown = app.log_pane.render().plain.splitlines()
        assert shown[0].startswith("trainer log · beta") and shown[-1] == "out row 199"
        assert len(shown) <= app.log_pane.size.height


async def test_t_is_in_the_footer_and_help(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        assert any(b.id == "trainer_log" and b.key == "t" and b.show for b in app.BINDINGS)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("t")  # the modal is gone: `t` reaches the app again
        assert app.log_pane.display
    docs = (Path(__file__).resolve().parents[2] / "docs" / "tui.md").read_text()
    assert "| `t` | `trainer_log` |" in docs


@pytest.mark.slow
async def test_crashed_run_shows_the_traceback_tail(tmp_path):
    """The real supervisor runs a program that prints for a while and dies with a traceback: the
    pane opened afterwards shows the traceback's last lines (the first read takes the log's end)."""
    run_dir = tmp_path / "crashy"
    rec = Record(run_dir)
    rec.start(attempt="crash-attempt")
    rec.epochs_run(1, 2)
    code = ("import sys\n"
            "for i in range(30000): print(f'step {i} loss 0.5', flush=False)\n"
            "sys.stderr.write(('noise ' * 400 + '\\n') * 150)\n"
            "def deep(n):\n"
            "    if n == 0: raise RuntimeError('CUDA error: an illegal memory access was encountered')\n"
            "    deep(n - 1)\n"
            "deep(3)\n")
    p = supervise.spawn(run_dir, [sys.executable, "-c", code], env={**os.environ, "PYTHONUNBUFFERED": "1", "SEGWATCH_ATTEMPT": "crash-attempt"})
    try:
        assert p.wait(timeout=60) == 1
    finally:
        if p.poll() is None:
            p.kill()
    assert (run_dir / "exit.json").exists() and (run_dir / "stderr.log").stat().st_size > 256 * 1024
    app = make_app([run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].status == "crashed", 10, "crashed")
        await pilot.press("t")
        await wait_for(pilot, lambda: "illegal memory access" in app.log_pane.plain(), 10, "the traceback")
        text = app.log_pane.plain()
        assert "err Traceback (most recent call last):" in text and "err RuntimeError: CUDA error" in text
        assert "out step 29999 loss 0.5" in text and "not shown" in text
        shown = app.log_pane.render().plain.splitlines()
        assert shown[-1] == "err RuntimeError: CUDA error: an illegal memory access was encountered"
