"""The benchmark harness must not rot: its quick mode (tiny sizes) runs end to end and writes
JSON with every figure bench/RESULTS.md reports. No timing is asserted: only keys and types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def stat(d: dict) -> bool:
    return isinstance(d, dict) and d.get("n", 0) >= 1 and all(num(d[k]) for k in ("median", "p5", "p95", "min", "max"))


def test_quick_mode_writes_every_figure(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["quick"] is True and doc["machine"]["cores"] >= 1
    assert all(r["exit"] == 0 for r in doc["runs"].values())
    res = doc["results"]

    lo = res["logging_overhead"]  # 1
    assert set(lo["variants"]) >= {"none", "segwatch"}
    assert stat(lo["ratio_to_none"]["segwatch"]) and stat(lo["cpu_ratio_to_none"]["segwatch"])
    for k in ("emit_step_us", "control_reader_poll_us", "control_point_us"):
        assert stat(lo["micro"][k])
    assert num(lo["segwatch_per_step_us"]) and num(lo["segwatch_overhead_fraction_computed"])

    fast = res["control_latency"]["fast"]  # 2
    assert fast["acked"] == fast["commands"] >= 1
    assert stat(fast["latency_ms"]) and stat(fast["step_ms"]) and stat(fast["latency_steps"])

    tl = res["tui_latency"]  # 3
    assert stat(tl["latency_ms"]) and tl["latency_ms"]["n"] == tl["epochs"]

    load, attach = res["tui_load"]["load"], res["tui_load"]["attach"]  # 4
    seg = load["segwatch"]
    assert num(seg["cpu_pct_one_core"]) and num(seg["rss_mb_max"]) and seg["rss_mb_max"] > 0
    assert load["alive_at_end"]["segwatch"] is True
    assert attach["status"] == "finished" and attach["epochs"] >= 1
    assert num(attach["seconds_to_last_epoch_on_screen"]) and num(attach["peak_rss_mb"])

    su = res["startup"]  # 5
    assert stat(su["help"]["segwatch --help"]["wall_s"]) and stat(su["help"]["segwatch --help"]["cpu_s"])
    assert stat(su["first_frame"]["seconds"]) and su["first_frame"]["missed"] == 0
    assert su["first_frame"]["libtorch_mapped_in_tui_process"] is False
    assert su["torch_check"]["torch_in_sys_modules"] is False

    tp = res["throughput"]["w0"]  # 6
    assert stat(tp["ratio_segwatch_to_bare"]) and stat(tp["segwatch_data_wait"])

    q = res["quality"]["runs"][0]  # 7
    assert q["config"] == "baseline" and q["epochs"] == 2 and q["seed"] == 42
    for k in ("val_f_last", "val_f_best", "pooled_f_last", "epoch_s_median"):
        assert num(q[k])
    assert len(q["per_class_f_last"]) == 19

    md = (out / "RESULTS.md").read_text()
    for heading in ("1. Logging overhead", "2. Control latency", "3. Event-to-screen", "4. The cockpit under load",
                    "5. Start-up", "6. Trainer throughput", "7. Quality"):
        assert heading in md


def test_gpu_script_smoke_on_cpu(tmp_path):
    """bench/gpu_throughput.py is only run on a GPU machine; its --smoke mode checks it on the CPU."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_throughput.py"), "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads((tmp_path / "gpu_throughput-smoke.json").read_text())
    a = d["model_step"]["compile=False"]
    assert set(a["images_per_s"]) == {"bare", "bare+sync", "segwatch"} and all(num(v) for v in a["images_per_s"].values())
    assert all(len(d["trainer_with_data"][k]["epochs"]) == 3 for k in ("prefill=False", "prefill=True"))
