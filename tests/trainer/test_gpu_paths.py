"""CUDA code paths checked on a CPU machine: torch.cuda's functions are patched to emulate the
GPUs (their count, compute capability, RNG states); our own code runs unpatched.

What only a real GPU can show is in bench/gpu_checks.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import checkpoint as ckpt
from trainer import cli
from trainer.core.config import load_config
from trainer.dist import DistContext
from trainer.device import choose_precision
from trainer.build import build, restore_state
from trainer.rundir import open_run
from trainer.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
TINY = ["data.synthetic_train=16", "data.synthetic_val=4", "data.image_size=32", "training.batch_size=4",
        "model.width=8", "training.warmup_epochs=0", "training.epochs=2"]


# --- item 8: amp / channels_last as YAML 1.1 writes them ---------------------------------------

def test_amp_and_channels_last_accept_yaml_on_off(tmp_path):
    cfg_file = tmp_path / "t4.yaml"
    cfg_file.write_text("training:\n  amp: off\n  channels_last: off\n")
    cfg = load_config(cfg_file)
    assert (cfg.training.amp, cfg.training.channels_last) == ("off", "off")
    cfg_file.write_text("training:\n  amp: on\n  channels_last: on\n")
    cfg = load_config(cfg_file)
    assert (cfg.training.amp, cfg.training.channels_last) == ("auto", "on")
    cfg = load_config(CONFIGS / "baseline.yaml", ["training.amp=off", "training.channels_last=false"])
    assert (cfg.training.amp, cfg.training.channels_last) == ("off", "off")


@pytest.fixture
def gpu(monkeypatch):
    """Emulated GPUs: ``gpu["count"]`` visible, compute capability ``gpu["cc"]``."""
    state = {"count": 1, "cc": (7, 5), "restored": []}

    def idx(device="cuda") -> int:
        d = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        return d.index or 0

    def get_rng_state(device="cuda"):
        i = idx(device)
        if i >= state["count"]:
            raise IndexError(f"no GPU {i}: {state['count']} visible")
        return torch.tensor([i, 7], dtype=torch.uint8)

    def set_rng_state(new_state, device="cuda"):
        i = idx(device)
        if i >= state["count"]:
            raise IndexError(f"no GPU {i}: {state['count']} visible")
        state["restored"].append((i, new_state.tolist()))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state["count"])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: state["cc"])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or state["cc"] >= (8, 0))
    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    return state


def test_amp_auto_takes_bf16_only_where_the_gpu_has_it_natively(gpu):
    cuda = torch.device("cuda", 0)
    gpu["cc"] = (7, 5)  # T4: bf16 only emulated
    on, why = choose_precision("auto", cuda)
    assert on is False and "fp32" in why and "7.5" in why
    on, why = choose_precision("bf16", cuda)  # asked for explicitly: granted, and said to be emulated
    assert on is True and "EMULATED" in why
    gpu["cc"] = (8, 0)  # A100
    on, why = choose_precision("auto", cuda)
    assert on is True and why.startswith("bf16") and "8.0" in why
    assert choose_precision("off", cuda)[0] is False
    assert choose_precision("auto", torch.device("cpu"))[0] is False


def test_the_start_event_says_which_precision_and_why(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text((CONFIGS / "baseline.yaml").read_text() + "\n")
    run = tmp_path / "r"
    args = ["--config", str(cfg_file), "--run-dir", str(run), "--device", "cpu"]
    for s in [*TINY, "training.epochs=1", "training.amp=off"]:
        args += ["--set", s]
    p = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    start = json.loads((run / "events.jsonl").read_text().splitlines()[0])
    assert start["precision"] == "fp32" and "training.amp is off" in start["precision_reason"]
    assert start["channels_last"] is False


# --- item 5: each rank's own GPU RNG state -------------------------------------------------------

def test_cuda_rng_state_is_per_rank_and_restores_where_fewer_gpus_are_visible(gpu):
    gpu["count"] = 2  # saved on a 2-GPU machine: rank r on cuda:r
    per_rank = [ckpt.rng_state(torch.device("cuda", r)) for r in (0, 1)]
    assert [s["cuda"].tolist() for s in per_rank] == [[0, 7], [1, 7]]  # its own GPU only
    payload = {"rng": per_rank[0], "rng_ranks": per_rank}
    ckpt.set_rng_state(ckpt.rank_rng(payload, 1), torch.device("cuda", 1))
    assert gpu["restored"] == [(1, [1, 7])]  # rank 1 gets its own state back, not rank 0's
    gpu["count"], gpu["restored"] = 1, []  # resumed where one GPU is visible
    ckpt.set_rng_state(ckpt.rank_rng(payload, 0), torch.device("cuda", 0))
    assert gpu["restored"] == [(0, [0, 7])]
    # a checkpoint of the old format (one state per visible GPU) no longer raises IndexError
    gpu["restored"] = []
    ckpt.set_rng_state({**per_rank[0], "cuda": [per_rank[0]["cuda"], per_rank[1]["cuda"]]}, torch.device("cuda", 0))
    assert gpu["restored"] == [(0, [0, 7])]


# --- item 6: more processes than GPUs ------------------------------------------------------------

def test_more_processes_than_visible_gpus_is_a_config_error_before_torchrun(gpu, monkeypatch, capsys, tmp_path):
    gpu["count"] = 1
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail(f"torchrun was started: {a}"))
    run = tmp_path / "r"
    rc = cli.main(["--config", str(CONFIGS / "baseline.yaml"), "--run-dir", str(run), "--device", "cuda",
                   "--nproc-per-node", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "2 processes" in err and "1 GPU(s) are visible" in err, err
    assert not run.exists()


def _checkpoint(tmp_path: Path, **edit) -> Path:
    """A real checkpoint of a tiny CPU run (trainer's own save), with fields edited afterwards."""
    cfg = load_config(CONFIGS / "baseline.yaml", TINY)
    run = tmp_path / "r"
    comp = open_run(build(cfg, torch.device("cpu"), DistContext()), run, None, [])
    Trainer(comp).save("last")
    comp.events.close()
    path = run / "checkpoints" / "last.pt"
    state = ckpt.load(path)
    state.update(edit)
    ckpt.save(path, state)
    return run


def test_resuming_a_two_gpu_run_where_one_gpu_is_visible_needs_allow_reshape(gpu, monkeypatch, capsys, tmp_path):
    run = _checkpoint(tmp_path, world_size=2)
    gpu["count"] = 1
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail(f"torchrun was started: {a}"))
    before = (run / "events.jsonl").read_bytes()
    rc = cli.main(["--resume", str(run), "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and "trained on 2 processes" in err and "--allow-reshape" in err, err
    assert (run / "events.jsonl").read_bytes() == before
    # asked to: it continues on the one visible GPU (one process: no torchrun), whether or not the
    # launch named the old count (segwatch resume --allow-reshape does not)
    from trainer.cli import _launch_nproc, parse_args

    for extra in ([], ["--nproc-per-node", "2"]):
        assert _launch_nproc(parse_args(["--resume", str(run), "--device", "cuda", "--allow-reshape", *extra]), 2) == 1


# --- item 10: the fused optimizer follows the device it runs on now -------------------------------

def test_resume_sets_fused_adamw_for_the_device_it_runs_on(tmp_path):
    run = _checkpoint(tmp_path)
    state = ckpt.load(run / "checkpoints" / "last.pt")
    for g in state["optimizer"]["param_groups"]:  # as a CUDA run saves it
        g["fused"] = True
    cfg = load_config(CONFIGS / "baseline.yaml", TINY)
    comp = build(cfg, torch.device("cpu"), DistContext())
    restore_state(comp, state)
    assert [g["fused"] for g in comp.optimizer.param_groups] == [False, False]


# --- item 2: --allow-reshape keeps the LR curve where it was ----------------------------------------

def test_allow_reshape_rescales_the_step_so_the_lr_continues_at_the_same_point(tmp_path):
    from trainer.schedule import lr_at
    from trainer.build import reshape_state

    cfg = load_config(CONFIGS / "baseline.yaml", [*TINY, "training.warmup_epochs=1", "training.epochs=3"])
    comp = build(cfg, torch.device("cpu"), DistContext())  # 16 images, batch 4: 4 steps per epoch on 1 process
    assert comp.steps_per_epoch == 4
    # stopped by a 2-process run (2 steps per epoch) after epoch 1 and 1 step of epoch 2
    state = {"epoch": 1, "step_in_epoch": 1, "step": 3}
    msg = reshape_state(comp, state, saved_world=2)
    assert (state["step"], state["step_in_epoch"]) == (6, 2) and "2 -> 4 steps per epoch" in msg
    lr = cfg.training.learning_rate
    assert lr_at(state["step"], lr, 4, 12, 0.01) == pytest.approx(lr_at(3, lr, 2, 6, 0.01))
