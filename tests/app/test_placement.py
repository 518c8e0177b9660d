"""GPU placement (issue 16 item 9), emulated: no GPU here, so nvidia-smi's ids come from
CUDA_VISIBLE_DEVICES, NVML is a stand-in module with the real API's names, and a live GPU run is a
record whose trainer process is alive. Sharing a GPU is never silent; a run on every GPU counts
as busy; a resumed run gets a free GPU; children number GPUs in PCI order; the cockpit finds each
rank's GPU by UUID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

from _runrecord import Record

from app import gpu as gpu_mod
from app import launch, placement
from app.plan.model import Plan, PlanItem
from app.plan.scheduler import Scheduler
from trainer.record import read_events

ROOT = Path(__file__).resolve().parents[2]


def test_placement_names_every_shared_gpu():
    """assign_gpus([2, 1], ['0', '1']) gave the second run GPU 0 under the DDP run, silently."""
    got, notes = placement.place([2, 1], ["0", "1"], names=["ddp", "solo"])
    assert got == [None, "0"]  # the DDP run inherits both GPUs
    assert len(notes) == 1 and notes[0].startswith("GPU 0 is SHARED by ddp, solo (3 GPUs needed, 2 visible")
    assert placement.place([1, 1], ["0", "1"]) == (["0", "1"], [])
    assert placement.place([2, 1], ["0", "1"], share=True) == ([None, None], [])   # --same-gpu: on purpose
    one = placement.place([1, 1], ["0"], names=["a", "b"])
    assert one[0] == [None, None] and "GPU 0 is SHARED by a, b" in one[1][0]     # one GPU, two runs: said
    assert launch.assign_gpus([2, 1], ["0", "1"]) == [None, "0"]


def test_segwatch_run_says_which_gpu_is_shared(tmp_path):
    a, b = tmp_path / "ddp.yaml", tmp_path / "solo.yaml"
    a.write_text("name: ddp\ntraining:\n  nproc_per_node: 2\n")
    b.write_text("name: solo\n")
    specs = launch.plan_runs([a, b], [], runs_dir=tmp_path / "runs", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert [s.gpus for s in specs] == [None, "0"]
    assert any("GPU 0 is SHARED by ddp, solo" in n for n in specs[0].notes)


def _plan(tmp_path: Path, nprocs: list[int], max_parallel: int = 2) -> Plan:
    items = [PlanItem(name=f"r{i}", run_dir=str(tmp_path / f"r{i}"), config="c.yaml", trainer_args=[], nproc=n)
             for i, n in enumerate(nprocs)]
    return Plan(name="p", kind="sweep", path=str(tmp_path / "p.json"), runs_dir=str(tmp_path), items=items,
                max_parallel=max_parallel)


def test_scheduler_counts_a_run_on_every_gpu_as_busy(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    s = Scheduler(_plan(tmp_path, [2, 1, 1]))
    assert s._place(2) == (True, "0,1")
    s.plan.items[0].gpus = None  # started before it had ids (inherits every GPU): still holds both
    s.running = {101: 0}
    assert s._place(1) == (False, None)  # waits: it used to start on GPU 0 beside the DDP run
    s.plan.items[0].gpus = "0,1"
    assert s._place(1) == (False, None)
    s.running = {102: 1}
    s.plan.items[1].gpus = "0"
    assert s._place(1) == (True, "1")
    assert s._place(2) == (False, None)  # a run on every GPU waits until all are free
    s.plan.max_parallel = 3  # --max-parallel beyond the GPUs: it shares, and says so
    s.running = {102: 1, 103: 2}
    s.plan.items[2].gpus = "1"
    assert s._place(1) == (True, "0") and "SHARED" in s.plan.note


def test_children_number_gpus_in_pci_order(tmp_path):
    spec = launch.LaunchSpec(Path("c.yaml"), tmp_path / "r", "r", [], gpus="1")
    env = launch.child_env(spec, {})
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert launch.child_env(spec, {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


def _env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **extra}


def test_resume_lands_on_a_free_gpu_not_on_the_one_a_live_run_holds(tmp_path):
    """`segwatch resume` gave no GPU: the restarted trainer took cuda:0 whoever held it."""
    runs = tmp_path / "runs"
    holder = Record(runs / "holder")  # a live run on GPU 0 (its trainer: a process named like one)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "trainer"])
    try:
        holder.event("start", name="holder", run_dir=str(holder.dir), pid=proc.pid, device="cuda:0", resumed=False,
                     resume_epoch=0, epochs=10, steps_per_epoch=10, batch_size=8, params=1, synthetic=True, data={},
                     live=holder.live, world_size=1, cuda_visible_devices="0",
                     gpus=[{"rank": 0, "index": 0, "visible_id": "0", "uuid": "GPU-aaaa", "name": "H200"}])
        (holder.dir / "trainer.pid").write_text(f"{proc.pid}\n")
        assert placement.busy_gpus(runs, ["0", "1"]) == {"0": "holder"}

        run_dir = runs / "victim"
        cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "baseline.yaml"), "--run-dir",
               str(run_dir), "--device", "cpu"]
        for s in ("data.synthetic_train=8", "data.synthetic_val=4", "data.image_size=32", "training.batch_size=4",
                  "training.epochs=2", "training.warmup_epochs=0", "model.width=8", "debug.step_delay=0.5"):
            cmd += ["--set", s]
        p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert (run_dir / "checkpoints" / "last.pt").exists()
        q = subprocess.run([sys.executable, "-m", "app", "resume", "victim", "--runs-dir", str(runs), "--headless",
                            "--interval", "0.2"], cwd=ROOT, env=_env(CUDA_VISIBLE_DEVICES="0,1"), capture_output=True,
                           text=True, timeout=180)
        assert "on GPU 1" in q.stderr, q.stderr
        starts = [e for e in read_events(run_dir / "events.jsonl") if e.get("type") == "start"]
        assert starts[-1]["resumed"] is True and starts[-1]["cuda_visible_devices"] == "1"
    finally:
        proc.kill()
        proc.wait()


class FakeNVMLError(Exception):
    pass


def fake_nvml(devices: list[dict]) -> types.ModuleType:
    """pynvml's names over a table of devices (NVML index order, host PIDs)."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNVMLError
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetCount = lambda: len(devices)
    m.nvmlDeviceGetHandleByIndex = lambda i: devices[i]

    def by_uuid(u):
        for d in devices:
            if d["uuid"] == u:
                return d
        raise FakeNVMLError("Not Found")

    def graphics(h):
        raise FakeNVMLError("Not Supported")

    m.nvmlDeviceGetHandleByUUID = by_uuid
    m.nvmlDeviceGetIndex = lambda h: devices.index(h)
    m.nvmlDeviceGetName = lambda h: h["name"].encode()
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=h["util"])
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=h["used"], total=80 * 2**30)
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=p, usedGpuMemory=2**30)
                                                        for p in h["pids"]]
    m.nvmlDeviceGetGraphicsRunningProcesses = graphics
    return m


def test_the_cockpit_finds_every_ranks_gpu_by_uuid(monkeypatch):
    """Inside a container NVML lists host PIDs: matching the trainer's PID finds nothing. Each
    rank's GPU is found by the UUID in the start event (NVML index 2 and 0 here)."""
    devs = [{"uuid": "GPU-b", "name": "H200", "util": 40, "used": 3 * 2**30, "pids": [90001]},
            {"uuid": "GPU-x", "name": "H200", "util": 0, "used": 0, "pids": []},
            {"uuid": "GPU-a", "name": "H200", "util": 75, "used": 5 * 2**30, "pids": [90000]}]
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(devs))
    monkeypatch.setattr(gpu_mod, "_state", "untried")
    container_pid = 17
    assert gpu_mod.gpu_for_pids({container_pid}) is None  # what the cockpit did: no GPU line at all
    got = gpu_mod.gpus_of_run([{"rank": 0, "uuid": "GPU-a"}, {"rank": 1, "uuid": "GPU-b"}], {container_pid})
    assert [(g["rank"], g["index"], g["util"], g["proc_mem"], g["mem_used"]) for g in got] == \
        [(0, 2, 75, None, 5 * 2**30), (1, 0, 40, None, 3 * 2**30)]
    assert gpu_mod.gpus_of_run([{"rank": 0, "uuid": "GPU-gone"}]) is None
    from app.tui.widgets.header import gpu_text

    assert gpu_text(got) == "rank 0: GPU2 75%  mem 5.0/80 GiB   rank 1: GPU0 40%  mem 3.0/80 GiB"


def test_no_pynvml_means_no_gpu_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setattr(gpu_mod, "_state", "untried")
    assert gpu_mod.gpus_of_run([{"rank": 0, "uuid": "GPU-a"}]) is None and gpu_mod.gpu_for_pids({1}) is None
