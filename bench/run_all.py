"""Run every bench, collect their JSON, render the Markdown tables.

    python bench/run_all.py [--quick] [--out DIR] [--only NAME[,NAME...]] [--render-only]

Each bench is also a script of its own (``python bench/<name>.py --help``); here each runs in its
own process (they set torch's thread count, start trainers and TUIs, and must not share state),
writes ``DIR/<name>*.json``, and this script merges them into ``DIR/results.json`` and renders
``DIR/RESULTS.md`` (tables only; bench/RESULTS.md adds the reading of them).

``--quick``: tiny sizes, a minute or so in all (CI runs it: tests/bench/test_bench_quick.py).
Nothing is asserted about timings anywhere. Defaults: DIR = bench/out (git-ignored).

The full run takes about an hour on the 2-core dev box, most of it bench/quality.py (4 configs x
20 epochs; run it apart, e.g. two chains in parallel, see bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, write_json  # noqa: E402

# name -> (script, extra args for the full run)
BENCHES = {
    "logging_overhead": ("logging_overhead.py", []),
    "control_latency": ("control_latency.py", []),
    "tui_latency": ("tui_latency.py", []),
    "tui_load": ("tui_load.py", []),
    "startup": ("startup.py", []),
    "throughput": ("throughput.py", []),
    "quality": ("quality.py", ["--threads", "1"]),
}


def run_bench(name: str, out: Path, quick: bool) -> dict:
    script, extra = BENCHES[name]
    argv = [sys.executable, str(ROOT / "bench" / script), "--out", str(out / name if name == "quality" else out)]
    argv += ["--quick"] if quick else extra
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - t0
    print(f"[{name}] {took:.1f} s, exit {proc.returncode}", flush=True)
    if proc.stdout.strip():
        print("\n".join("    " + x for x in proc.stdout.strip().splitlines()[-8:]), flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return {"seconds": round(took, 1), "exit": proc.returncode, "command": " ".join(["python", *argv[1:]]).replace(str(ROOT) + "/", "")}


def collect(out: Path) -> dict:
    """Every bench's latest JSON under ``out`` (quality: all its per-chain files, merged)."""
    res: dict = {}

    def load(p: Path) -> dict:
        d = json.loads(p.read_text())
        d.pop("machine", None)
        return d

    for name in BENCHES:
        if name == "quality":
            runs, epochs = [], None
            for p in sorted((out / "quality").glob("quality-*.json")):
                d = load(p)
                epochs = d.get("epochs", epochs)
                runs += d.get("runs", [])
            if runs:
                order = {c: i for i, c in enumerate(("baseline", "lmsa", "lmsa_focal", "lmsa_aggressive"))}
                runs.sort(key=lambda r: order.get(r["config"], 9))
                res["quality"] = {"epochs": epochs, "runs": runs}
        elif name == "throughput":
            for p in sorted(out.glob("throughput-w*.json")):
                res.setdefault("throughput", {})[p.stem.split("-")[-1]] = load(p)
        elif name == "tui_load":
            for p in sorted(out.glob("tui_load*.json")):
                if "compare" in p.stem:
                    res.setdefault("tui_load_compare", load(p)["load"])
                    continue
                res.setdefault("tui_load", {}).update(load(p))
        else:
            p = out / f"{name}.json"
            if p.exists():
                res[name] = load(p)
    return res


def _f(x, fmt=".3f", dash="–"):
    return dash if not isinstance(x, (int, float)) or x != x else format(x, fmt)


def render(res: dict, machine: dict, command: str) -> str:
    L = [f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['mem_gib']} GiB; load average at render "
         f"{machine['loadavg']}; Python {machine['python']}; " +
         ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v) + f"; commit {machine['git_commit']}.",
         f"Command: `{command}`", ""]
    lo = res.get("logging_overhead")
    if lo:
        s = lo["setup"]
        L += ["### 1. Logging overhead", "",
              f"`python bench/logging_overhead.py` - {s['params']:,}-parameter model (width {s['width']}), "
              f"{s['image_size']} px, batch {s['batch']}, log every {s['log_every']} steps, {s['rounds']} rounds x "
              f"{s['block_steps']} steps per variant, interleaved, {s['torch_threads']} torch thread(s); step "
              f"{lo['step_ms_none_median']:.0f} ms.", "",
              "| variant | steps/s ratio to no logging, median (p5-p95) | CPU per step ratio, median (p5-p95) | CPU ms/step |",
              "|---|---|---|---|"]
        none_cpu = lo.get("cpu_ms_per_step", {}).get("none", {})
        L.append(f"| none | 1 | 1 | {_f(none_cpu.get('median'), '.1f')} |")
        for v, r in lo["ratio_to_none"].items():
            c = lo.get("cpu_ratio_to_none", {}).get(v, {})
            cm = lo.get("cpu_ms_per_step", {}).get(v, {})
            L.append(f"| {v} | {_f(r['median'], '.4f')} ({_f(r['p5'], '.3f')}-{_f(r['p95'], '.3f')}) | "
                     f"{_f(c.get('median'), '.4f')} ({_f(c.get('p5'), '.3f')}-{_f(c.get('p95'), '.3f')}) | {_f(cm.get('median'), '.1f')} |")
        m = lo["micro"]
        L += ["", "| per-call cost (microbenchmark) | median us in the caller | CPU us incl. background threads/processes |",
              "|---|---|---|"]
        for k, v in m.items():
            L.append(f"| {k.replace('_us', '')} | {_f(v['median'], '.1f')} | {_f(v.get('tree_cpu_us'), '.1f')} |")
        fast = lo.get("computed_overhead_at_20ms_step") or {}
        if fast:
            L += ["", "Computed from those CPU costs, at a 20 ms step logging every 10 steps: " +
                  ", ".join(f"{k} **{v * 100:.3f} %**" for k, v in fast.items()) + "."]
        L += ["", f"segwatch per step = control_point + emit / log_every = {lo['segwatch_per_step_us']:.1f} us = "
              f"**{lo['segwatch_overhead_fraction_computed'] * 100:.4f} %** of this {lo['step_ms_none_median']:.0f} ms step.", ""]
        if lo.get("missing"):
            L += [f"Not measured: {lo['missing']}", ""]
    cl = res.get("control_latency")
    if cl:
        L += ["### 2. Control latency (append to control.jsonl -> ack in events.jsonl)", "",
              "`python bench/control_latency.py` - real trainer process, `set gamma` via `Run.send`, random send times.", "",
              "| step | commands acked | step median (p95) ms | latency p50 ms | p95 ms | max ms | p95 in steps |",
              "|---|---|---|---|---|---|---|"]
        for k, r in cl.items():
            if not isinstance(r, dict) or "latency_ms" not in r:
                continue
            la, st, ls = r["latency_ms"], r["step_ms"], r["latency_steps"]
            L.append(f"| {k} (step_delay {r['step_delay_s']} s) | {r['acked']}/{r['commands']} | {_f(st.get('median'), '.0f')} "
                     f"({_f(st.get('p95'), '.0f')}) | {_f(la.get('median'), '.0f')} | {_f(la.get('p95'), '.0f')} | "
                     f"{_f(la.get('max'), '.0f')} | {_f(ls.get('p95'), '.2f')} |")
        L.append("")
    tl = res.get("tui_latency")
    if tl:
        s = tl["latency_ms"]
        L += ["### 3. Event-to-screen latency (headless run_test)", "",
              f"`python bench/tui_latency.py` - {s['n']} epoch events, watcher interval {tl['interval_s']} s: "
              f"p50 **{s['median']:.0f} ms**, p95 **{s['p95']:.0f} ms**, max {s['max']:.0f} ms.", ""]
    tld = res.get("tui_load")
    if tld:
        L += ["### 4. The cockpit under load", ""]
        ld = tld.get("load")
        if ld:
            L += [f"`python bench/tui_load.py` - two fake runs at {ld['step_events_per_s_per_run']} step events/s, "
                  f"{ld['seconds']} s window, 160x50 pty.", "",
                  "| process | CPU % of one core | RSS mean MB | RSS max MB |", "|---|---|---|---|"]
            for k in ("segwatch", "wandb_leet"):
                v = ld.get(k)
                if isinstance(v, dict):
                    L.append(f"| {k.replace('_', ' ')} | {v['cpu_pct_one_core']:.2f} | {v['rss_mb_mean']:.0f} | {v['rss_mb_max']:.0f} |")
                elif v:
                    L.append(f"| {k.replace('_', ' ')} | {v} | | |")
            L.append("")
        cmp_ = res.get("tui_load_compare")
        if cmp_:
            a_, b_ = cmp_.get("segwatch", {}), cmp_.get("segwatch_compare_tree", {})
            L += [f"Side by side, this tree vs `{cmp_.get('compare_tree')}` (`python bench/tui_load.py --only load --no-leet "
                  f"--compare-tree DIR`, both watching the same two runs at {cmp_['step_events_per_s_per_run']} events/s): "
                  f"{a_.get('cpu_pct_one_core')} % vs {b_.get('cpu_pct_one_core')} % of one core; terminal output "
                  f"{cmp_['tty_bytes_out'].get('segwatch', 0) / 1e6:.2f} MB vs "
                  f"{cmp_['tty_bytes_out'].get('segwatch_compare_tree', 0) / 1e6:.2f} MB in {cmp_['seconds']} s.", ""]
        at = tld.get("attach")
        if at:
            L += [f"Attach to {at['events']:,} events ({at['file_mb']:.0f} MB): last epoch on screen after "
                  f"**{at['seconds_to_last_epoch_on_screen']:.1f} s**, peak RSS **{at['peak_rss_mb']:.0f} MB** "
                  f"({at['step_points_kept']} plot points kept), {at.get('cpu_s', '–')} CPU s.", ""]
    su = res.get("startup")
    if su:
        L += ["### 5. Start-up", "", "`python bench/startup.py`", "",
              "| command | wall median s (p5-p95) | CPU median s | wall / python start |", "|---|---|---|---|"]
        for k, v in su["help"].items():
            w, c = v["wall_s"], v["cpu_s"]
            L.append(f"| `{k}` | {_f(w['median'])} ({_f(w['p5'])}-{_f(w['p95'])}) | {_f(c['median'])} | {_f(v['wall_ratio_to_python_start'], '.1f')} |")
        ff = su["first_frame"]
        L += ["", f"First painted frame of `segwatch attach` (pty): median **{_f(ff['seconds'].get('median'))} s**, "
              f"max {_f(ff['seconds'].get('max'))} s; libtorch mapped in the TUI process: "
              f"{ff['libtorch_mapped_in_tui_process']}; headless start: torch in sys.modules: "
              f"{su['torch_check']['torch_in_sys_modules']}.", ""]
    tp = res.get("throughput")
    if tp:
        L += ["### 6. Trainer throughput (CPU)", "", "`python bench/throughput.py` - default model (1.66 M parameters), 128 px, batch 16, "
              "1 torch thread, 6 rounds of one epoch each, alternating.", "",
              "| num_workers | segwatch samples/s | bare loop samples/s | ratio median (p5-p95) | ratio per CPU second, median (p5-p95) | data wait (segwatch) | data wait (bare) |",
              "|---|---|---|---|---|---|---|"]
        for k, d in tp.items():
            r = d["ratio_segwatch_to_bare"]
            L.append(f"| {d['setup']['num_workers']} | {_f(d['segwatch_samples_per_s']['median'], '.1f')} | "
                     f"{_f(d['bare_samples_per_s']['median'], '.1f')} | {_f(r['median'], '.3f')} ({_f(r['p5'], '.3f')}-{_f(r['p95'], '.3f')}) | "
                     f"{_f(d['cpu_ratio_segwatch_to_bare']['median'], '.3f')} ({_f(d['cpu_ratio_segwatch_to_bare']['p5'], '.3f')}-"
                     f"{_f(d['cpu_ratio_segwatch_to_bare']['p95'], '.3f')}) | "
                     f"{_f(d['segwatch_data_wait']['median'] * 100, '.1f')} % | {_f(d['bare_data_wait']['median'] * 100, '.1f')} % |")
        for k, d in tp.items():
            if d.get("step_parts_cpu_ms"):
                L += ["", f"CPU ms of each part of one step ({k}): " + ", ".join(f"{a} {b:.1f}" for a, b in d["step_parts_cpu_ms"].items())]
        L.append("")
    q = res.get("quality")
    if q:
        L += ["### 7. Quality and seconds per epoch on the built-in synthetic data", "",
              "| config | epochs | seed | s/epoch median (min-max) | CPU s/epoch | val F last (best @epoch) | small-class F | pooled F |",
              "|---|---|---|---|---|---|---|---|"]
        for r in q["runs"]:
            L.append(f"| {r['config']} | {r['epochs']} | {r['seed']} | {_f(r['epoch_s_median'], '.1f')} "
                     f"({_f(r['epoch_s_min'], '.1f')}-{_f(r['epoch_s_max'], '.1f')}) | {_f(r.get('cpu_s_per_epoch_median'), '.1f')} | "
                     f"{_f(r['val_f_last'], '.4f')} ({_f(r['val_f_best'], '.4f')} @{r['best_epoch']}) | "
                     f"{_f(r['small_f_last'], '.4f')} | {_f(r['pooled_f_last'], '.4f')} |")
        L.append("")
    return "\n".join(L)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--only", default="", help="comma-separated bench names: " + ", ".join(BENCHES))
    p.add_argument("--render-only", action="store_true", help="only merge the JSON already in --out and render")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in (a.only.split(",") if a.only else BENCHES) if n]
    runs = {}
    failed = []
    if not a.render_only:
        for name in names:
            runs[name] = run_bench(name, out, a.quick)
            if runs[name]["exit"] != 0:
                failed.append(name)
    res = collect(out)
    machine = machine_info()
    command = "python bench/run_all.py" + (" --quick" if a.quick else "") + (f" --only {a.only}" if a.only else "")
    write_json(out / "results.json", {"machine": machine, "quick": a.quick, "runs": runs, "results": res})
    (out / "RESULTS.md").write_text(render(res, machine, command) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
