"""Item 3: event-to-screen latency of the cockpit (Textual headless, ``App.run_test``).

    python bench/tui_latency.py [--n 60] [--interval 0.25] [--quick] [--out DIR]

The cockpit (``SegwatchApp``, the watcher thread polling at ``--interval``, the default of
``segwatch run/attach``) follows one run written by the fake trainer (tests/app/fake_trainer.py,
the record format of docs/run-directory.md). The bench appends one epoch's events (4 step events,
the ``epoch`` event, a ``checkpoint``) at random moments (gaps uniform in 0.1-0.6 s, so they fall
anywhere in the poll cycle) and records when the pane's numbers widget *paints* that epoch's val F
(``Numbers.render`` is wrapped: the first render whose text holds ``val F 0.xyz`` of the new
epoch). Latency = paint time - the moment just before the events were appended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "app"))

from bench.common import machine_info, summary, write_json  # noqa: E402


async def _measure(n: int, interval: float, tmp: Path) -> dict:
    from fake_trainer import FakeTrainer, canned_epoch

    from app.health import load_rules
    from app.runlib import Run
    from app.tui.app import SegwatchApp

    ft = FakeTrainer(tmp / "lat", epochs=n + 10, hold=True)
    ft.pid = os.getpid()  # alive: this process
    ft._setup()
    ft._epoch(1, 0)
    app = SegwatchApp([Run(ft.run_dir)], [load_rules()], interval=interval, gpu=False)
    painted: list[tuple[float, str]] = []
    lat: list[float] = []
    async with app.run_test(size=(160, 60)) as pilot:
        numbers = app.panes[0].parts[1]
        orig = numbers.render

        def render():
            out = orig()
            painted.append((time.monotonic(), out.plain))
            return out

        numbers.render = render
        deadline = time.monotonic() + 30
        while not (0 in app.views and app.views[0].epoch == 1):
            if time.monotonic() > deadline:
                raise RuntimeError("the first epoch never reached the screen")
            await pilot.pause(0.02)
        rnd = random.Random(11)
        for e in range(2, n + 2):
            await pilot.pause(rnd.uniform(0.1, 0.6))
            want = f"val F {canned_epoch(e, ft.live)['val_f']:.3f}"
            painted.clear()
            t0 = time.monotonic()
            ft._epoch(e, 0)
            deadline = t0 + 5
            hit = None
            while hit is None and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
                hit = next((t for t, text in painted if want in text), None)
            if hit is None:
                raise RuntimeError(f"epoch {e} was not painted within 5 s")
            lat.append((hit - t0) * 1000)
        updates, ticks = app.updates, app.watcher.ticks
    return {"interval_s": interval, "epochs": n, "latency_ms": summary(lat), "ui_updates": updates,
            "watcher_ticks": ticks, "samples_ms": [round(x, 1) for x in lat]}


def run(n: int = 60, interval: float = 0.25, quick: bool = False) -> dict:
    if quick:
        n = 5
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-tuilat-"))
    try:
        return asyncio.run(_measure(n, interval, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--interval", type=float, default=0.25)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    res = run(a.n, a.interval, a.quick)
    write_json(Path(a.out) / "tui_latency.json", {"machine": machine_info(), **res})
    s = res["latency_ms"]
    print(f"event-to-screen at {a.interval} s polling: p50 {s['median']:.0f} ms, p95 {s['p95']:.0f} ms, "
          f"max {s['max']:.0f} ms over {s['n']} epochs")


if __name__ == "__main__":
    main()
