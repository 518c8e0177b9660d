"""The DDP helpers against real process groups (two gloo ranks as processes).

NCCL registers a backend for the ``cuda`` device type only; a gloo group registered the same
way (``backend="cuda:gloo"``) reproduces on a CPU machine the crash every multi-GPU run hit at its
first step ("No backend type associated with device type cpu")."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("dist_rank.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks(tmp_path: Path, mode: str, *extra: str, timeout: float = 180) -> list[dict]:
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), mode, str(tmp_path / f"out{rank}.json"), *extra],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    return [json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow  # two rank processes, each importing torch
def test_helpers_put_their_tensors_on_the_groups_device_under_an_nccl_style_device_map(tmp_path):
    for r in two_ranks(tmp_path, "cuda-only"):
        # the emulation is faithful: the group refuses CPU tensors exactly as NCCL does
        assert "No backend type associated with device type cpu" in r["cpu_tensor"]
        assert r["coll_device"] == "cuda"
        for helper in ("sync_max", "broadcast_objects", "any_flag"):
            # no CUDA here, so the call cannot finish, but it failed because it used cuda
            # (this machine has none), not because it handed the group a CPU tensor
            assert "device type cpu" not in r[helper] and "CUDA" in r[helper], (helper, r[helper])


@pytest.mark.slow  # two rank processes, each importing torch
def test_per_step_flags_are_one_max_reduce_and_rank0_lines_follow_only_when_announced(tmp_path):
    r0, r1 = two_ranks(tmp_path, "flags")
    assert r0["merged"] == r1["merged"] == [1, 1, 2]  # non-finite on rank 1, SIGTERM on rank 0, 2 lines
    assert r0["items"] == r1["items"] == [{"line": 1}, {"line": 2}]


@pytest.mark.slow
def test_a_ddp_training_step_costs_one_collective_plus_a_broadcast_when_commands_came(tmp_path):
    run = tmp_path / "run"
    r0, r1 = two_ranks(tmp_path, "trainer-steps", str(run))
    assert r0["per_step"] == r1["per_step"] == [["all_reduce"], ["all_reduce", "broadcast_object_list"], ["all_reduce"]]
    assert r0["lr"] == r1["lr"] == 1e-4  # the command reached both ranks at the same step
