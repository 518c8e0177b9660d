"""Regenerate the cockpit screenshots in docs/screenshots/ (SVG, Textual's save_screenshot).

    python docs/make_screenshots.py

The runs are the test suite's fake trainer replaying a canned record (tests/app/fake_trainer.py):
no torch, a few seconds, the same picture every time except the clock times.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "app")]

from fake_trainer import FakeTrainer  # noqa: E402

from app.health import load_rules  # noqa: E402
from app.refs import load_ref  # noqa: E402
from app.runlib import Run  # noqa: E402
from app.tui.app import SegwatchApp  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZE = (200, 58)


async def _wait(pilot, pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("the screenshot runs did not get there")
        await pilot.pause(0.05)


async def shoot(specs: list[tuple[str, str, int]], filename: str, keys: list[tuple[int, str]],
                size: tuple[int, int] = SIZE, refs: list[tuple[str, str, int]] = (), after: str = "") -> Path:
    """``refs``: finished runs (name, scenario, epochs) overlaid as references; ``after``: keys pressed last."""
    with tempfile.TemporaryDirectory() as tmp:
        ref_views = []
        for name, scenario, epochs in refs:
            done = FakeTrainer(Path(tmp) / name, epochs=epochs, history=epochs, steps_per_epoch=20, hold=False,
                               scenario=scenario)
            done.run()
            ref_views.append(load_ref(str(done.run_dir), tmp))
        fakes = [FakeTrainer(Path(tmp) / name, epochs=250, history=hist, steps_per_epoch=20, step_delay=3.0,
                             scenario=scenario).start() for name, scenario, hist in specs]
        try:
            runs = [Run(f.run_dir) for f in fakes]
            app = SegwatchApp(runs, [load_rules() for _ in runs], interval=0.1, gpu=False, refs=ref_views)
            async with app.run_test(size=size) as pilot:
                await _wait(pilot, lambda: len(app.views) == len(fakes)
                            and all(app.views[i].epoch == h for i, (_, _, h) in enumerate(specs)))
                for index, key in keys:
                    await pilot.press(str(index + 1), key)
                    await _wait(pilot, lambda: any(a.status == "applied" for a in app.views[index].adjustments))
                await pilot.press("1", *after)
                app.clear_notifications()
                # every pane and the overlay have drawn the newest views (they coalesce redraws)
                plots = [app.overlay.f_plot, app.overlay.loss_plot,
                         *(w for p in app.panes.values() if p.display for w in p.parts[2:4])]
                await _wait(pilot, lambda: all(p._pending is None or not p.display for p in app.panes.values())
                            and all(p._timer is None for p in plots))
                await pilot.pause(0.5)
                path = Path(app.save_screenshot(filename, str(OUT)))
        finally:
            for f in fakes:
                f.stop_thread()
    return path


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    one = asyncio.run(shoot([("lmsa_focal", "healthy", 42)], "one_run.svg", [(0, "g")]))
    two = asyncio.run(shoot([("lmsa_focal", "healthy", 42), ("lmsa_aggressive", "overfit+worse", 40)], "two_runs.svg",
                            [(1, "l")]))
    six = asyncio.run(shoot([(f"gamma_{g}", "overfit" if k % 3 == 1 else "healthy", 30 + k) for k, g in
                             enumerate(("0.5", "1", "1.5", "2", "2.5", "3"))], "six_runs.svg", [], size=(200, 55)))
    small = asyncio.run(shoot([("lmsa_aggressive", "overfit", 40)], "one_run_80x24.svg", [], size=(80, 24),
                              refs=[("baseline", "worse", 60)]))
    ref = asyncio.run(shoot([("lmsa_focal", "healthy", 42)], "one_run_ref.svg", [], refs=[("baseline", "worse", 60)],
                            after="ee"))
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in (one, two, six, small, ref)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
