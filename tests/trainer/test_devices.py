"""--device (issue 16 item 9), emulated with a patched torch.cuda: cuda:N becomes the current
device, an index beyond the visible GPUs is a config error, `auto` with a broken driver says
loudly that it fell back to the CPU, and the start event lists every local rank's GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from trainer import device as devices
from trainer.core.config import ConfigError
from trainer.record import read_events

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def four_gpus(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: calls[-1] if calls else 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(torch.device("cuda", d).index
                                                                         if not isinstance(d, int) else d))
    return calls


def test_cuda_n_becomes_the_current_device(four_gpus):
    dev, note = devices.choose_device("cuda:2")
    assert dev == torch.device("cuda", 2) and note is None
    assert four_gpus == [2]  # kernels, caches and NCCL of this process go to GPU 2, not GPU 0
    from trainer.build import resolve_device

    assert resolve_device("cuda:3") == torch.device("cuda", 3) and four_gpus[-1] == 3
    with pytest.raises(ConfigError, match=r"sees 4 GPU\(s\) \(allowed: cuda:0..cuda:3"):
        devices.choose_device("cuda:7")
    with pytest.raises(ConfigError, match="allowed: auto | cpu | cuda | cuda:N"):
        devices.choose_device("tpu")


def test_auto_with_a_broken_driver_says_it_fell_back(monkeypatch):
    def broken():
        warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 10020).")
        return False

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    dev, note = devices.choose_device("auto")
    assert dev.type == "cpu" and "fell back to the CPU" in note and "driver on your system is too old" in note
    with pytest.raises(ConfigError, match="driver on your system is too old"):
        devices.choose_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no GPU, no warning, no device nodes
    monkeypatch.setattr(devices, "_gpu_signs", lambda: [])
    assert devices.choose_device("auto") == (torch.device("cpu"), None)
    monkeypatch.setattr(devices, "_gpu_signs", lambda: ["/dev/nvidia0"])  # a GPU, and a torch that cannot use it
    dev, note = devices.choose_device("auto")
    assert dev.type == "cpu" and "/dev/nvidia0" in note


def test_a_trainer_that_fell_back_to_the_cpu_says_so_in_its_record(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "trainer" / "broken_cuda"), str(ROOT)])}
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "baseline.yaml"), "--run-dir",
           str(tmp_path / "run"), "--device", "auto"]
    for s in ("data.synthetic_train=4", "data.synthetic_val=2", "data.image_size=32", "training.batch_size=2",
              "training.epochs=1", "training.warmup_epochs=0", "model.width=8"):
        cmd += ["--set", s]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "!! --device auto fell back to the CPU: CUDA does not work here: CUDA initialization" in p.stdout
    evs = read_events(tmp_path / "run" / "events.jsonl")
    start = next(e for e in evs if e["type"] == "start")
    assert start["device"] == "cpu" and "fell back to the CPU" in start["device_note"] and start["gpus"] == []
    assert any(e["type"] == "warning" and e.get("code") == "device_fallback" for e in evs)


def test_the_start_event_lists_every_local_ranks_gpu(monkeypatch):
    uuids = {0: "5e1f0000-0000-0000-0000-000000000000", 1: "GPU-already-prefixed"}
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(uuid=uuids[i], name=f"H200 #{i}"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    got = devices.gpu_inventory(torch.device("cuda", 0), local_world=2)
    assert got == [{"rank": 0, "index": 0, "visible_id": "2", "uuid": "GPU-5e1f0000-0000-0000-0000-000000000000",
                    "name": "H200 #0"},
                   {"rank": 1, "index": 1, "visible_id": "3", "uuid": "GPU-already-prefixed", "name": "H200 #1"}]
    assert devices.gpu_inventory(torch.device("cpu")) == []
    one = devices.gpu_inventory(torch.device("cuda", 1))
    assert [(g["rank"], g["index"], g["visible_id"]) for g in one] == [(0, 1, "3")]
