"""The run directory is untrusted input to the trainer too (issue 11, trainer side).

A FIFO in place of control.jsonl, a symlinked events.jsonl, forged answers in events.jsonl and a
torn control line: the trainer never blocks, never writes through a link, never replays a record
a live command would have been refused for, and never leaves a command unanswered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faults import ROOT, START_NOTICES, answers, descendants, env, events, popen_trainer, run_trainer, send, trainer_argv, wait_for

SMALL = ["data.synthetic_train=16", "data.synthetic_val=8"]  # 2 steps per epoch


def resume_argv(run_dir: Path, *sets: str) -> list[str]:
    argv = ["--resume", str(run_dir), "--device", "cpu"]
    for s in sets:
        argv += ["--set", s]
    return argv


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "r"
    p = run_trainer(trainer_argv(run, *SMALL, "training.epochs=1"))
    assert p.returncode == 0, p.stderr
    return run


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun's ranks run in sessions of their own)."""
    for p in [*reversed(descendants(pid)), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "r"
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_a_fifo_in_place_of_control_jsonl_is_reported_and_training_goes_on(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    os.mkfifo(run / "control.jsonl", 0o600)
    try:
        p = run_trainer(trainer_argv(run, *SMALL, "training.epochs=1"), timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("the trainer blocked on the FIFO")
    assert p.returncode == 0, p.stderr
    warns = [w for w in events(run, "warning") if w["code"] == "control_refused"]
    assert len(warns) == 1 and "control.jsonl" in warns[0]["message"] and "FIFO" in warns[0]["message"]
    assert [e["epoch"] for e in events(run, "epoch")] == [1]


def test_a_symlinked_events_jsonl_is_not_followed_on_resume(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    target = tmp_path / "elsewhere.jsonl"
    os.replace(run / "events.jsonl", target)
    os.symlink(target, run / "events.jsonl")
    before = target.read_bytes()
    p = run_trainer(resume_argv(run, "training.epochs=2"))
    assert p.returncode == 2 and "events.jsonl" in p.stderr and "symbolic link" in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1
    assert target.read_bytes() == before and os.path.islink(run / "events.jsonl")


def test_events_jsonl_replaced_by_a_symlink_mid_run_is_not_followed(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, *SMALL, "training.epochs=2", "debug.step_delay=0.3"))
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 120, "the first step")
        os.replace(run / "events.jsonl", tmp_path / "moved.jsonl")
        os.symlink(target, run / "events.jsonl")
        assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-2000:]
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
    assert target.read_text() == "precious\n"
    assert "events.jsonl" in err and "not followed" in err


def test_forged_answers_in_the_record_are_validated_before_replay(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    seq = max(e["seq"] for e in events(run))
    forged = [
        {"type": "ack", "id": "forged-lr", "cmd": "set", "changes": {"lr": [5e-4, 50]}},  # outside (0, 1]
        {"type": "ack", "id": "forged-shape", "cmd": "set", "changes": {"lr": 5}},  # not an [old, new] pair
        {"type": "ack", "id": ["not", "a", "string"], "cmd": "set", "changes": {"gamma": [2.0, 1.0]}},
        {"type": "ack", "id": "forged-key", "cmd": "set", "changes": {"batch_size": [8, 4096]}},
        {"type": "ack", "id": "ok-gamma", "cmd": "set", "changes": {"gamma": [2.0, 1.25]}, "line": 7},
    ]
    with open(run / "events.jsonl", "a") as f:
        for i, ev in enumerate(forged, 1):
            f.write(json.dumps({"v": 1, "seq": seq + i, "t": 0, **ev}) + "\n")
    p = run_trainer(resume_argv(run, "training.epochs=2"))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    start = events(run, "start")[-1]
    assert start["live"]["lr"] == 5e-4 and start["live"]["gamma"] == 1.25  # a valid one is replayed
    refused = [w for w in events(run, "warning") if w["code"] == "replay_refused"]
    assert len(refused) == 4, refused
    for w, i in zip(refused, range(1, 5)):
        assert f"seq {seq + i}" in w["message"]
    assert "lr = 50 is not allowed" in refused[0]["message"] and "batch_size" in refused[3]["message"]
    assert all(s["lr"] <= 5e-4 for s in events(run, "step"))


def test_a_torn_control_line_never_swallows_the_next_command(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, *SMALL, "training.epochs=3", "debug.step_delay=0.3"))
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 120, "the first step")
        # a writer dies mid-line; another one (not segwatch's) appends right onto the fragment
        send(run, "", raw=b'{"v": 1, "id": "torn", "cmd": "set", "values": {"gamma"')
        merged = send(run, "set", values={"gamma": 1.5})
        after = send(run, "set", values={"dropout": 0.2})
        # segwatch's own writer ends a partial line first (docs/control.md): fragment, then command
        send(run, "", raw=b'{"v": 1, "id": "torn2", "cmd": "st')
        send(run, "", raw=b"\n")
        clean = send(run, "set", values={"gamma": 1.0})
        for cid in (merged, after, clean):
            wait_for(lambda: answers(run, cid), 60, f"the answer to {cid}")
        send(run, "stop")
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert [a["type"] for a in answers(run, merged)] == ["ack"] and answers(run, merged)[0]["line"] == 1
    assert [a["type"] for a in answers(run, after)] == ["ack"] and answers(run, after)[0]["line"] == 2
    assert [a["type"] for a in answers(run, clean)] == ["ack"] and answers(run, clean)[0]["line"] == 4
    by_line = [n for n in events(run, "nack") if n["id"] is None]
    assert sorted(n["line"] for n in by_line) == [1, 3]
    assert "fragment" in by_line[0]["reason"]
    assert not [w for w in events(run, "warning") if w["code"] == "duplicate_command"]


@pytest.mark.slow
def test_ddp_resume_replays_no_pause_on_any_rank(tmp_path):
    """Issue 16 item 4: a set and a pause answered after the last checkpoint, then a kill while
    paused; the resumed 2-rank run must not re-apply the pause on rank 1 alone (it hung there),
    must re-apply the set on both ranks, and must not warn."""
    run = tmp_path / "r"
    argv = trainer_argv(run, "data.synthetic_train=32", "data.synthetic_val=8", "training.epochs=3",
                        "debug.step_delay=0.3", "debug.rank_log=true") + ["--nproc-per-node", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *argv], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and [c for c in events(run, "checkpoint") if c["epoch"] == 1],
                 240, "the epoch 1 checkpoint")
        ids = [send(run, "set", values={"gamma": 1.5}), send(run, "pause")]
        wait_for(lambda: events(run, "paused") and all(answers(run, i) for i in ids), 60, "paused")
        kill_tree(proc.pid)  # killed while paused: torchrun and both ranks
        proc.wait(timeout=30)
    finally:
        kill_tree(proc.pid)
    assert not [c for c in events(run, "checkpoint") if c["seq"] > events(run, "paused")[0]["seq"]]
    resumed = subprocess.Popen([sys.executable, "-m", "trainer", "--resume", str(run), "--device", "cpu",
                                "--nproc-per-node", "2"], cwd=ROOT, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        rc = resumed.wait(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("the resumed 2-rank run hung (a replayed pause on one rank)")
    finally:
        kill_tree(resumed.pid)
    assert rc == 0, resumed.stderr.read().decode()[-3000:]
    start = events(run, "start")[-1]
    assert start["live"]["gamma"] == 1.5 and start["world_size"] == 2
    assert not [w for w in events(run, "warning") if w["code"] not in START_NOTICES]
    assert all(len(answers(run, i)) == 1 for i in ids)
    assert events(run, "end")[-1]["reason"] == "completed"
    logs = [[e for e in map(json.loads, (run / "ranks" / f"rank{r}.jsonl").read_text().splitlines()) if "step" in e]
            for r in (0, 1)]  # each rank's steps (not its seed line)
    assert logs[0] == logs[1] and logs[0][-1]["gamma"] == 1.5  # both ranks: same steps, the replayed gamma


class _Masks:
    """A raw source of two label maps for class_frequencies (a cache_key makes it cacheable)."""

    cache_key = "two-masks"

    def __len__(self):
        return 2

    def get_raw(self, i):
        import numpy as np

        return np.zeros((4, 4, 3), np.uint8), np.full((4, 4), i + 1, np.uint8)


@pytest.mark.parametrize("plant", ["fifo", "symlink"])
def test_the_class_frequency_cache_is_never_waited_on_or_written_through(tmp_path, plant):
    """class_frequencies.json sits in the run directory unless data.cache_dir is set."""
    from trainer.data.stats import class_frequencies

    cache, victim = tmp_path / "class_frequencies.json", tmp_path / "victim.json"
    if plant == "fifo":
        os.mkfifo(cache, 0o600)
    else:
        victim.write_text('{"two-masks": {"frequencies": [1.0]}}')
        os.symlink(victim, cache)
    with pytest.warns(UserWarning, match="class_frequencies.json"):
        freqs = class_frequencies(_Masks(), str(cache))
    assert freqs[1] == freqs[2] == 0.5
    assert cache.is_file() and not cache.is_symlink()  # replaced by a regular file of its own
    if plant == "symlink":
        assert victim.read_text() == '{"two-masks": {"frequencies": [1.0]}}'
