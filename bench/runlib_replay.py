"""How long does the run library take to rebuild a long run from its record?

    python bench/runlib_replay.py [N_STEPS]      (default 1,000,000 step events)

Writes a synthetic events.jsonl (N step events, an epoch event every 1,000 steps) into a
temporary folder, then times Run.refresh() in 4 MiB slices, one whole-file Run.refresh(), and
RunState.apply over already-parsed events; reports the peak RSS. Nothing is asserted.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.runlib import Run, RunState  # noqa: E402


def events(n: int):
    t = 1_764_423_000.0
    yield {"v": 1, "seq": 0, "t": t, "type": "start", "name": "bench", "pid": None, "resume_epoch": 0,
           "epochs": n // 1000 + 1, "steps_per_epoch": 1000, "live": {"lr": 5e-4, "epochs": n // 1000 + 1}}
    seq = 1
    for s in range(1, n + 1):
        ep = (s - 1) // 1000 + 1
        yield {"v": 1, "seq": seq, "t": t + s * 0.01, "type": "step", "epoch": ep, "step": s,
               "loss": 1.0 / s, "lr": 5e-4, "gamma": 2.0, "samples_per_s": 812.5, "data_wait": 0.02}
        seq += 1
        if s % 1000 == 0:
            yield {"v": 1, "seq": seq, "t": t + s * 0.01, "type": "epoch", "epoch": ep, "step": s,
                   "train_loss": 0.5, "val_loss": 0.6, "val_f": 0.5 + ep * 1e-4, "per_class_f": [0.5] * 19,
                   "lr": 5e-4, "epochs": n // 1000 + 1}
            seq += 1


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(f"peak RSS at start: {rss_mib():.0f} MiB")
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d) / "bench"
        run_dir.mkdir()
        with open(run_dir / "events.jsonl", "w") as f:
            for ev in events(n):
                f.write(json.dumps(ev) + "\n")
        size = (run_dir / "events.jsonl").stat().st_size
        t0 = time.perf_counter()
        run = Run(run_dir)
        n_ev = 0
        while True:
            n_ev += len(run.refresh(max_bytes=4 << 20))
            if not run.events_tail.more:
                break
        print(f"Run.refresh in 4 MiB slices (read + parse + apply): {size / 2**20:.0f} MiB, {n_ev:,} events in "
              f"{time.perf_counter() - t0:.2f} s; status {run.state.status}, {len(run.state.steps)} step points, "
              f"{len(run.state.epochs)} epochs; peak RSS {rss_mib():.0f} MiB")
        t0 = time.perf_counter()
        run.refresh()
        print(f"an idle refresh afterwards: {(time.perf_counter() - t0) * 1e6:.0f} us")
        t0 = time.perf_counter()
        got = Run(run_dir).refresh()
        print(f"one Run.refresh() of the whole file: {len(got):,} events in {time.perf_counter() - t0:.2f} s; "
              f"peak RSS {rss_mib():.0f} MiB (the returned list holds every event)")
        del got
    evs = list(events(n))
    t0 = time.perf_counter()
    st = RunState()
    for ev in evs:
        st.apply(ev)
    t_apply = time.perf_counter() - t0
    print(f"RunState.apply alone (events already parsed): {len(evs):,} events in {t_apply:.2f} s "
          f"({len(evs) / t_apply:,.0f} events/s)")


if __name__ == "__main__":
    main()
