"""Item 4: the cockpit under load, and attaching to a very long record.

    python bench/tui_load.py [--seconds 60] [--attach-events 1000000] [--no-leet] [--quick] [--out DIR]
    python bench/tui_load.py --only attach [--compare-tree OLD_TREE] [--repeats N]

Load: two fake trainers (tests/app/fake_trainer.py as processes, paced by bench/_paced_fake.py: 20
step events per second each, an epoch event every 200 steps) and ``segwatch attach A B`` (the real
command, default 0.25 s polling) on a 160x50 pseudo-terminal whose output is drained. After a
warm-up, the CPU time (user + system, all threads and children, from /proc) and the RSS of the
segwatch process are sampled for ``--seconds``. Where ``wandb leet`` exists, at the same time and
for the same window: two offline W&B runs logging the same numbers at the same rate
(bench/_wandb_writer.py) and ``wandb leet`` on their folder, on its own pseudo-terminal.

Attach: a record of N step events (an epoch event every 1,000 steps, ~184 bytes a line, then an
``end``) is written, and a fresh process opens the cockpit on it headless (``App.run_test``) and
reports the seconds until the pane shows the last epoch and its peak RSS (``ru_maxrss``). With
``--compare-tree``, that tree's cockpit and this one's attach to the same record in turn.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PtyProcess, machine_info, peak_rss, stop_all, tree_cpu_rss, write_json  # noqa: E402

FAKE = ROOT / "tests" / "app" / "fake_trainer.py"
MB = 1e6


def _leet_available() -> str | None:
    exe = shutil.which("wandb") or str(Path(sys.executable).parent / "wandb")
    if not Path(exe).exists():
        return None
    try:
        out = subprocess.run([exe, "leet", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if out.returncode == 0 and "LEET" in out.stdout else None


def _sample(pids: dict[str, int], seconds: float) -> dict:
    """CPU % of one core and RSS of each process tree over ``seconds``."""
    c0 = {k: tree_cpu_rss(p)[0] for k, p in pids.items()}
    t0 = time.monotonic()
    rss: dict[str, list[int]] = {k: [] for k in pids}
    windows: dict[str, list[float]] = {k: [] for k in pids}  # CPU % in each 10 s window
    last = dict(c0)
    tick = 0
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        tick += 1
        for k, p in pids.items():
            cpu, r = tree_cpu_rss(p)
            rss[k].append(r)
            if tick % 10 == 0:
                windows[k].append(round((cpu - last[k]) / 10.0 * 100, 2))
                last[k] = cpu
    dt = time.monotonic() - t0
    out = {}
    for k, p in pids.items():
        cpu = tree_cpu_rss(p)[0] - c0[k]
        r = rss[k] or [0]
        out[k] = {"cpu_pct_one_core": round(cpu / dt * 100, 2), "cpu_s": round(cpu, 2), "window_s": round(dt, 1),
                  "rss_mb_mean": round(sum(r) / len(r) / MB, 1), "rss_mb_max": round(max(r) / MB, 1),
                  "peak_rss_mb_main": round((peak_rss(p) or 0) / MB, 1),
                  "cpu_pct_10s_windows": windows[k]}
    return out


def _count(path: Path, kind: bytes) -> int:
    try:
        return path.read_bytes().count(b'"type":"' + kind + b'"')
    except FileNotFoundError:
        return 0


def load(seconds: float = 60, warmup: float = 8, leet: bool = True, compare_tree: str | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-load-"))
    procs: list = []
    ptys: list[PtyProcess] = []
    try:
        runs = [tmp / "run-a", tmp / "run-b"]
        for d in runs:
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "_paced_fake.py"), str(d),
                                           "--rate", "20", "--steps-per-epoch", "200"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        sw = PtyProcess([sys.executable, "-m", "app", "attach", *map(str, runs), "--no-gpu"], cwd=ROOT)
        ptys.append(sw)
        pids = {"segwatch": sw.pid}
        if compare_tree:  # the same command from another source tree, watching the same runs at the same time
            other = PtyProcess([sys.executable, "-m", "app", "attach", *map(str, runs), "--no-gpu"], cwd=compare_tree)
            ptys.append(other)
            pids["segwatch_compare_tree"] = other.pid
        leet_exe = _leet_available() if leet else None
        if leet_exe:
            wdir = tmp / "wandb-runs"
            wdir.mkdir()
            for name in ("run-a", "run-b"):
                procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "_wandb_writer.py"), str(wdir), name],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(4.0)  # the offline runs' folders must exist before leet looks
            lt = PtyProcess([leet_exe, "leet", str(wdir / "wandb")], cwd=tmp)
            ptys.append(lt)
            pids["wandb_leet"] = lt.pid
        time.sleep(warmup)
        n0 = [_count(d / "events.jsonl", b"step") for d in runs]
        res = _sample(pids, seconds)
        n1 = [_count(d / "events.jsonl", b"step") for d in runs]
        alive = {k: p.proc.poll() is None for k, p in zip(pids, ptys)}
        rates = [round((b - a) / res["segwatch"]["window_s"], 1) for a, b in zip(n0, n1)]
        return {"seconds": seconds, "step_events_per_s_per_run": rates, "alive_at_end": alive,
                "compare_tree": compare_tree,
                "tty_bytes_out": {k: p.bytes_out for k, p in zip(pids, ptys)}, **res,
                "wandb_leet": res.get("wandb_leet") or ("not run (--no-leet)" if not leet else "wandb leet not available")}
    finally:
        stop_all(ptys, procs, tmp)


# --- attach to a long record -----------------------------------------------------------------


def write_long_record(run_dir: Path, n: int) -> tuple[int, int]:
    from bench.runlib_replay import events

    run_dir.mkdir(parents=True, exist_ok=True)
    last_epoch, seq = 0, 0
    with open(run_dir / "events.jsonl", "w") as f:
        buf = []
        for ev in events(n):
            if ev["type"] == "epoch":
                last_epoch = ev["epoch"]
            seq = ev["seq"]
            buf.append(json.dumps(ev))
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf.clear()
        buf.append(json.dumps({"v": 1, "seq": seq + 1, "t": 1_764_423_000.0 + n * 0.01, "type": "end",
                               "reason": "completed", "epoch": last_epoch, "best_val_f": 0.6, "best_epoch": last_epoch}))
        f.write("\n".join(buf) + "\n")
    return last_epoch, (run_dir / "events.jsonl").stat().st_size


def _attach_child(run_dir: str, last_epoch: int) -> None:
    """In a fresh process: open the cockpit on the record, wait for the last epoch on screen."""
    import asyncio

    t0 = time.perf_counter()
    from app.health import load_rules
    from app.runlib import Run
    from app.tui.app import SegwatchApp

    async def go() -> dict:
        app = SegwatchApp([Run(run_dir)], [load_rules()], interval=0.25, gpu=False)
        async with app.run_test(size=(160, 50)) as pilot:
            header = app.panes[0].parts[0]
            deadline = time.perf_counter() + 600
            want = f"epoch {last_epoch}/"
            while True:
                v = app.views.get(0)
                if v is not None and v.epoch == last_epoch and want in header.render().plain:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError("attach did not finish within 600 s")
                await pilot.pause(0.05)
            took = time.perf_counter() - t0
            return {"seconds_to_last_epoch_on_screen": round(took, 2), "status": v.status,
                    "step_points_kept": len(v.loss_steps[0]), "epochs": v.epoch}

    out = asyncio.run(go())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_mb"] = round(ru.ru_maxrss * 1024 / MB, 1)
    out["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)  # all threads: on an idle core, about the wall time
    print(json.dumps(out))


def _attach_once(tree: Path, run_dir: Path, last_epoch: int) -> dict:
    proc = subprocess.run([sys.executable, str(tree / "bench" / "tui_load.py"), "--_attach", str(run_dir),
                           str(last_epoch)], capture_output=True, text=True, cwd=tree, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"attach child ({tree}) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def attach(n_events: int = 1_000_000, compare_tree: str | None = None, repeats: int = 1) -> dict:
    """One record; a fresh process per attach. With ``compare_tree``: that tree's cockpit (before)
    and this one's (after) attach to the same record in turn, ``repeats`` times each (medians)."""
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-attach-"))
    try:
        t0 = time.perf_counter()
        last_epoch, size = write_long_record(tmp / "long", n_events)
        written = time.perf_counter() - t0
        head = {"events": n_events + n_events // 1000 + 2, "file_mb": round(size / MB, 1), "write_s": round(written, 1)}
        if not compare_tree:
            runs = [_attach_once(ROOT, tmp / "long", last_epoch) for _ in range(repeats)]
            return {**head, **_median(runs)}
        before, after = [], []
        for _ in range(repeats):  # interleaved: both see the same load
            before.append(_attach_once(Path(compare_tree).resolve(), tmp / "long", last_epoch))
            after.append(_attach_once(ROOT, tmp / "long", last_epoch))
        return {**head, "repeats": repeats, "before": {"tree": str(compare_tree), **_median(before)},
                "after": {"tree": str(ROOT), **_median(after)}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _median(runs: list[dict]) -> dict:
    """Each numeric field's median over the runs (the other fields of the first run)."""
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = sorted(r[k] for r in runs)
            out[k] = vals[len(vals) // 2]
    if len(runs) > 1:
        out["seconds_each"] = [r["seconds_to_last_epoch_on_screen"] for r in runs]
        out["cpu_s_each"] = [r["cpu_s"] for r in runs]
    return out


def run(seconds: float = 60, attach_events: int = 1_000_000, leet: bool = True, quick: bool = False) -> dict:
    if quick:
        seconds, attach_events, leet = 3, 20_000, False
    return {"load": load(seconds, warmup=3 if quick else 8, leet=leet), "attach": attach(attach_events)}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--_attach":
        _attach_child(sys.argv[2], int(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--attach-events", type=int, default=1_000_000)
    p.add_argument("--no-leet", action="store_true")
    p.add_argument("--compare-tree", help="also run `segwatch attach` from this source tree, side by side (before/after)")
    p.add_argument("--repeats", type=int, default=1, help="attaches per tree (--only attach; medians reported)")
    p.add_argument("--only", choices=("load", "attach"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    if a.only == "load":
        res = {"load": load(a.seconds, leet=not a.no_leet, compare_tree=a.compare_tree)}
    elif a.only == "attach":
        res = {"attach": attach(a.attach_events, a.compare_tree, max(1, a.repeats))}
    else:
        res = run(a.seconds, a.attach_events, not a.no_leet, a.quick)
    name = f"tui_load{'-' + a.only if a.only else ''}{'-compare' if a.compare_tree else ''}.json"
    write_json(Path(a.out) / name, {"machine": machine_info(), **res})
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
