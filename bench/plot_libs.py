"""plotext (textual-plotext, what the cockpit uses) against textual-plot, side by side.

    pip install textual-plot==0.10.1      (not a dependency of segwatch: see the verdict below)
    python bench/plot_libs.py [--n 40] [--runs 6] [--points 240]

In one Textual app (run_test, 78x14 each), the same overlaid figure in each library: ``--runs``
val F curves of ``--points`` points with a legend. Each round changes the data of both (one new
point per curve) and waits for the frame; the CPU time of each library's data update + render is
measured around its own calls (time.process_time, one thread). Also reported: whether importing
the library imports numpy (the app must not: docs/architecture.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def series(k: int, n: int, shift: int) -> tuple[list[float], list[float]]:
    xs = [float(i + shift) for i in range(n)]
    return xs, [0.8 * (1 - math.exp(-(x + 1) / (30 + 7 * k))) + 0.01 * math.sin(x + k) for x in xs]


async def measure(rounds: int, runs: int, points: int) -> dict:
    numpy_before = "numpy" in sys.modules
    from textual.app import App
    from textual.containers import Horizontal
    from textual_plotext import PlotextPlot
    numpy_after_plotext = "numpy" in sys.modules
    from textual_plot import PlotWidget
    numpy_after_textual_plot = "numpy" in sys.modules
    colours = ["green", "cyan", "orange", "magenta", "yellow", "red"]  # plotext's names
    styles = ["green", "cyan", "dark_orange", "magenta", "yellow", "red"]  # rich's, for textual-plot

    class Bench(App):
        CSS = "PlotextPlot, PlotWidget { width: 78; height: 14; }"

        def compose(self):
            with Horizontal():
                yield PlotextPlot(id="pe")
                yield PlotWidget(id="tp")

    app = Bench()
    cpu = {"idle": 0.0, "plotext": 0.0, "textual_plot": 0.0}

    def draw_plotext(pe, data):
        p = pe.plt
        p.clear_data()
        p.clear_figure()
        p.title("val F")
        for k, (xs, ys) in enumerate(data):
            p.plot(xs, ys, label=f"run{k}", color=colours[k % len(colours)])
        p.ylim(0, 1)
        pe.refresh()

    def draw_textual_plot(tp, data):
        tp.clear()
        for k, (xs, ys) in enumerate(data):
            tp.plot(xs, ys, line_style=styles[k % len(styles)], label=f"run{k}")
        tp.set_ylimits(0, 1)
        tp.show_legend()

    async with app.run_test(size=(160, 20)) as pilot:
        pe, tp = app.query_one("#pe"), app.query_one("#tp")
        await pilot.pause(0.5)
        # each phase: the app's whole CPU (data update, render, compositor, frames) over its rounds;
        # "idle" is the same loop with nothing updated, subtracted from the others
        for phase in ("idle", "plotext", "textual_plot", "idle", "plotext", "textual_plot"):
            t = time.process_time()
            for r in range(rounds // 2):
                data = [series(k, points, r) for k in range(runs)]
                if phase == "plotext":
                    draw_plotext(pe, data)
                elif phase == "textual_plot":
                    draw_textual_plot(tp, data)
                await pilot.pause(0.05)
            cpu[phase] += time.process_time() - t
    idle = cpu.pop("idle")
    cpu = {k: v - idle for k, v in cpu.items()}
    return {"rounds": rounds, "runs": runs, "points_per_curve": points,
            "cpu_ms_per_redraw": {k: round(v / rounds * 1000, 1) for k, v in cpu.items()},
            "numpy_imported": {"before": numpy_before, "after textual_plotext": numpy_after_plotext,
                               "after textual_plot": numpy_after_textual_plot}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--points", type=int, default=240)
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.n, a.runs, a.points)), indent=1))


if __name__ == "__main__":
    main()
