"""The cockpit's workers have one error handler: a worker that fails is shown in the header and as a
toast, and the cockpit keeps running (Textual workers with exit_on_error=False)."""

from __future__ import annotations

from _runrecord import Record
from tui_helpers import make_app, wait_for


async def test_a_failing_watcher_is_shown_in_the_header_and_the_cockpit_stays_up(tmp_path):
    rec = Record(tmp_path / "alpha")
    rec.start()
    rec.epochs_run(1, 2)
    app = make_app([rec.dir])

    def broken_loop(*_a, **_k):  # fault injection: a bug in the watcher's loop
        raise RuntimeError("a watcher bug [with brackets]")

    app.watcher.loop = broken_loop
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: app.worker_errors, 10, "the worker error")
        assert app.worker_errors == ["watcher stopped: RuntimeError: a watcher bug [with brackets]"]
        assert "watcher stopped: RuntimeError: a watcher bug [with brackets]" in str(app.topbar.render())
        assert app.is_running and app.return_code is None
        await pilot.press("question_mark")  # the cockpit still answers keys
        await pilot.pause(0.1)
        assert app.screen is not app.screen_stack[0]
