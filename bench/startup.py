"""Item 5: start-up. ``segwatch --help``, and the time to the cockpit's first painted frame.

    python bench/startup.py [--n 15] [--quick] [--out DIR]

``--help``: wall time of ``segwatch --help`` (the installed console script), interleaved with
``python -c pass`` (the interpreter's own start, the floor) and, where installed, ``wandb --help``
and ``tensorboard --help``; median and spread of each.

First frame: ``segwatch attach RUN`` (a short finished record) on a 160x50 pseudo-terminal; the
time from spawning it to the first output that holds the run's name (the pane's border title:
Textual paints the whole first frame in one write). Torch: the same process is checked while it
runs: ``/proc/PID/maps`` must map no libtorch, and a headless in-process start of the cockpit
(``App.run_test``, first frame) must leave ``torch`` out of ``sys.modules``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PtyProcess, machine_info, summary, write_json  # noqa: E402

BIN = Path(sys.executable).parent


def _cmds(peers: bool = True) -> dict[str, list[str]]:
    cmds = {"python -c pass": [sys.executable, "-c", "pass"]}
    seg = shutil.which("segwatch") or str(BIN / "segwatch")
    cmds["segwatch --help"] = [seg, "--help"] if Path(seg).exists() else [sys.executable, "-m", "app", "--help"]
    for peer in ("wandb", "tensorboard") if peers else ():
        exe = shutil.which(peer) or str(BIN / peer)
        if Path(exe).exists():
            cmds[f"{peer} --help"] = [exe, "--help"]
    return cmds


def help_times(n: int, peers: bool = True) -> dict:
    cmds = _cmds(peers)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(2 if peers else 1):  # warm the page cache
        for argv in cmds.values():
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for r in range(n):
        keys = list(cmds)
        keys = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in keys:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmds[k], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            ok = proc.returncode == 0
            times[k].append(time.perf_counter() - t0 if ok else float("nan"))
            cpu[k].append(ru.ru_utime + ru.ru_stime if ok else float("nan"))
    out = {}
    for k in cmds:
        out[k] = {"wall_s": summary([x for x in times[k] if x == x]), "cpu_s": summary([x for x in cpu[k] if x == x])}
    base = out["python -c pass"]
    for k, v in out.items():
        v["wall_ratio_to_python_start"] = v["wall_s"]["median"] / base["wall_s"]["median"]
        v["cpu_minus_python_start_s"] = v["cpu_s"]["median"] - base["cpu_s"]["median"]
    return out


def _record(run_dir: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from fake_trainer import FakeTrainer

    ft = FakeTrainer(run_dir, epochs=5, hold=False)
    ft.pid = 999_999_999
    ft.run()


def first_frame(n: int, tmp: Path) -> dict:
    run_dir = tmp / "startup-run"
    _record(run_dir)
    needle = b"startup-run"
    times, torch_mapped = [], []
    for _ in range(n):
        p = PtyProcess([sys.executable, "-m", "app", "attach", str(run_dir), "--no-gpu"], cwd=ROOT, needle=needle)
        deadline = time.perf_counter() + 30
        while p.needle_t is None and time.perf_counter() < deadline and p.proc.poll() is None:
            time.sleep(0.005)
        seen = (p.needle_t - p.t_spawn) if p.needle_t is not None else None
        try:
            maps = Path(f"/proc/{p.pid}/maps").read_text()
            torch_mapped.append("libtorch" in maps)
        except OSError:
            torch_mapped.append(None)
        p.stop()
        times.append(seen if seen is not None else float("nan"))
    return {"seconds": summary([t for t in times if t == t]), "missed": sum(1 for t in times if t != t),
            "libtorch_mapped_in_tui_process": any(bool(x) for x in torch_mapped)}


def headless_torch_check(tmp: Path) -> dict:
    code = f"""
import asyncio, sys, time, json
t0 = time.perf_counter()
from app.cli import build_parser
build_parser()
from app.health import load_rules
from app.runlib import Run
from app.tui.app import SegwatchApp
async def go():
    app = SegwatchApp([Run({str(tmp / 'startup-run')!r})], [load_rules()], gpu=False)
    async with app.run_test(size=(160, 50)) as pilot:
        while 0 not in app.views:
            await pilot.pause(0.02)
        await pilot.pause(0.1)
asyncio.run(go())
print(json.dumps({{"torch_in_sys_modules": "torch" in sys.modules,
                  "numpy_in_sys_modules": "numpy" in sys.modules,
                  "modules": len(sys.modules), "seconds": time.perf_counter() - t0}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n: int = 15, quick: bool = False) -> dict:
    if quick:
        n = 2
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-start-"))
    try:
        helps = help_times(n, peers=not quick)
        ff = first_frame(max(3, n // 2) if not quick else 1, tmp)
        chk = headless_torch_check(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"help": helps, "first_frame": ff, "torch_check": chk}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=15)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    res = run(a.n, a.quick)
    write_json(Path(a.out) / "startup.json", {"machine": machine_info(), **res})
    for k, v in res["help"].items():
        w, c = v["wall_s"], v["cpu_s"]
        print(f"{k}: wall median {w['median']:.3f} s (p5 {w['p5']:.3f}, p95 {w['p95']:.3f}); "
              f"CPU median {c['median']:.3f} s")
    ff = res["first_frame"]["seconds"]
    print(f"first painted frame: median {ff.get('median', float('nan')):.3f} s (max {ff.get('max', float('nan')):.3f}); "
          f"libtorch mapped: {res['first_frame']['libtorch_mapped_in_tui_process']}; {res['torch_check']}")


if __name__ == "__main__":
    main()
