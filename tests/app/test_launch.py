"""Starting trainers: run directories, GPU assignment, validation first, no torch in the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import launch
from trainer.core.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=64", "training.epochs=3",
        "training.warmup_epochs=0", "training.batch_size=8"]


def cfg(tmp_path: Path, name: str = "exp", body: str = "") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(body or "training:\n  epochs: 3\n  warmup_epochs: 0\n")
    return p


def test_run_dirs_get_a_numeric_suffix(tmp_path):
    assert launch.reserve_run_dir(tmp_path, "x") == tmp_path / "x"
    assert launch.reserve_run_dir(tmp_path, "x") == tmp_path / "x-2"
    assert launch.reserve_run_dir(tmp_path, "x") == tmp_path / "x-3"


def test_plan_names_and_arguments(tmp_path):
    a, b = cfg(tmp_path, "focal"), cfg(tmp_path, "aggr")
    specs = launch.plan_runs([a, b], TINY, runs_dir=tmp_path / "runs", device="cpu", env={})
    assert [s.name for s in specs] == ["focal", "aggr"]
    assert specs[0].trainer_args[:2] == ["--config", str(a.resolve())]
    assert "--run-dir" in specs[0].trainer_args and "name=focal" in specs[0].trainer_args
    same = launch.plan_runs([a, a], [], runs_dir=tmp_path / "runs", name="try", env={})
    assert [s.name for s in same] == ["try-focal", "try-focal-2"]


def test_bad_config_starts_nothing(tmp_path):
    good, bad = cfg(tmp_path, "good"), cfg(tmp_path, "bad", "training:\n  learning_rat: 1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        launch.plan_runs([good, bad], [], runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError):
        launch.plan_runs([good], [], runs_dir=tmp_path / "runs", name="a/b")


def test_gpu_assignment():
    assert launch.assign_gpus([1, 1], ["0", "1"]) == ["0", "1"]
    assert launch.assign_gpus([1, 1], ["0", "1"], share=True) == [None, None]
    assert launch.assign_gpus([1, 1], ["0"]) == [None, None]  # one GPU: they share it
    assert launch.assign_gpus([1, 1, 1], ["0", "1"]) == ["0", "1", "0"]
    assert launch.assign_gpus([2, 2], ["0", "1", "2", "3"]) == ["0,1", "2,3"]
    assert launch.assign_gpus([1], ["0", "1"]) == [None]
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_child_env_and_argv(tmp_path):
    spec = launch.LaunchSpec(Path("c.yaml"), tmp_path / "r", "r", ["--config", "c.yaml"], gpus="1")
    env = launch.child_env(spec, {"PYTHONPATH": "/x"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/x"]
    argv = launch.supervise_argv(spec, python="py")
    assert argv[:3] == ["py", "-m", "app.supervise"] and argv[4:8] == ["--", "py", "-m", "trainer"]


def test_trainers_live_in_their_own_session(tmp_path):
    spec = launch.LaunchSpec(Path("c.yaml"), tmp_path / "r", "r", [])
    launch.start(spec, argv=[sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert os.getsid(spec.pid) == spec.pid != os.getsid(0)
    finally:
        spec.proc.kill()
        spec.proc.wait()


def test_segwatch_run_refuses_a_bad_config(tmp_path):
    bad = cfg(tmp_path, "bad", "loss:\n  focal_gamma: 99\n")
    p = subprocess.run([sys.executable, "-m", "app", "run", str(bad), "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 2 and "focal_gamma" in p.stderr
    assert not (tmp_path / "runs").exists()


def test_resume_spec_keeps_the_runs_process_count(tmp_path):
    """A 2-rank DDP run is resumed on 2 processes (segwatch resume used to restart it on one)."""
    run = tmp_path / "ddp"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"name": "ddp", "world_size": 2}))
    spec = launch.resume_spec(run, device="cpu")
    assert spec.nproc == 2
    i = spec.trainer_args.index("--nproc-per-node")
    assert spec.trainer_args[i + 1] == "2" and spec.trainer_args[:2] == ["--resume", str(run.resolve())]
    (run / "meta.json").write_text(json.dumps({"name": "ddp", "world_size": 1}))
    spec = launch.resume_spec(run, device="cpu")
    assert spec.nproc == 1 and "--nproc-per-node" not in spec.trainer_args


def test_resume_with_allow_reshape_lets_the_trainer_pick_the_count(tmp_path):
    run = tmp_path / "ddp"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"name": "ddp", "world_size": 2}))
    spec = launch.resume_spec(run, device="cuda", allow_reshape=True)
    assert "--allow-reshape" in spec.trainer_args and "--nproc-per-node" not in spec.trainer_args
    from app.cli import build_parser

    args = build_parser().parse_args(["resume", "ddp", "--allow-reshape"])
    assert args.allow_reshape is True
