"""Stop, resume, pause and restart keep a run's record true (issue 11, trainer side).

Real trainer processes on tiny synthetic data: a stop during validation resumes with the epoch's
real train numbers; a resume answers no command twice and warns only about a real duplicate; a
paused trainer obeys SIGTERM; ``--run-dir`` never overwrites a run; ``--resume --set`` is applied
as a recorded adjustment or refused, never ignored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from faults import START_NOTICES, answers, events, popen_trainer, run_trainer, send, trainer_argv, wait_for

from app.runlib import Run
from trainer.schedule import lr_at

SMALL = ["data.synthetic_train=16", "data.synthetic_val=8"]  # 2 steps per epoch


def tiny(run_dir: Path, *sets: str) -> list[str]:
    return trainer_argv(run_dir, *SMALL, *sets)


def resume_argv(run_dir: Path, *sets: str) -> list[str]:
    argv = ["--resume", str(run_dir), "--device", "cpu"]
    for s in sets:
        argv += ["--set", s]
    return argv


def tree_bytes(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by content hash, links by target, folders by name."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link -> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def false_warnings(run_dir: Path) -> list[dict]:
    return [w for w in events(run_dir, "warning") if w.get("code") not in START_NOTICES]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed one-epoch tiny run (copy it before changing it)."""
    run = tmp_path_factory.mktemp("finished") / "r"
    p = run_trainer(tiny(run, "training.epochs=1"))
    assert p.returncode == 0, p.stderr
    return run


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "r"
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.mark.parametrize("how", ["stop command", "SIGTERM"])
def test_stop_during_validation_resumes_with_the_epochs_real_train_numbers(tmp_path, how):
    run = tmp_path / "r"
    # the step delay holds the trainer after the epoch's last step, before validation starts
    proc = popen_trainer(tiny(run, "training.epochs=2", "debug.step_delay=1.0"))
    try:
        spe = wait_for(lambda: events(run, "start"), 120, "the start event")[0]["steps_per_epoch"]
        wait_for(lambda: [s for s in events(run, "step") if s["step"] == spe], 120, "the epoch's last step")
        stop = None
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            stop = send(run, "stop")
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        proc.kill()
    if stop:  # answered in validation: after the last step, before the epoch event
        assert [a["step"] for a in answers(run, stop)] == [spe]
    assert not events(run, "epoch"), "the stop came after the epoch's end: the test missed the validation window"
    assert events(run, "checkpoint")[-1]["step"] == spe and events(run, "end")[-1]["reason"] == "stopped"
    first_steps = [s["loss"] for s in events(run, "step") if s["epoch"] == 1]

    p = run_trainer(resume_argv(run))
    assert p.returncode == 0, p.stderr
    epochs = events(run, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2]
    e1 = epochs[0]
    assert e1["train_loss"] is not None and e1["train_f"] is not None and "nonfinite" not in e1
    # the real numbers of epoch 1: the mean of its steps' losses (log_every=1), not of no step
    assert e1["train_loss"] == pytest.approx(sum(first_steps) / len(first_steps), rel=1e-5)
    assert [s["step"] for s in events(run, "step")] == list(range(1, 2 * spe + 1))  # no step twice
    assert false_warnings(run) == []


def test_resume_answers_nothing_twice_and_warns_only_about_a_real_duplicate(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(tiny(run, "training.epochs=3", "debug.step_delay=0.3"))
    try:
        wait_for(lambda: events(run, "step"), 120, "the first step")
        ids = [send(run, "set", values={"gamma": 1.5}), send(run, "pause")]
        wait_for(lambda: events(run, "paused"), 60, "paused")
        ids += [send(run, "resume"), send(run, "set", values={"lr": 1e-3}, reason="x"), send(run, "stop")]
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert all(len(answers(run, i)) == 1 for i in ids)

    proc = popen_trainer(resume_argv(run))
    try:
        wait_for(lambda: len(events(run, "start")) == 2 and events(run, "step")[-1]["seq"] > events(run, "start")[-1]["seq"],
                 120, "a step of the resumed run")
        raw = (run / "control.jsonl").read_bytes().splitlines()[0] + b"\n"  # the first command again
        send(run, "", raw=raw)
        lines = len((run / "control.jsonl").read_bytes().splitlines())
        wait_for(lambda: false_warnings(run), 60, "the duplicate warning")
        assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        proc.kill()
    warns = false_warnings(run)
    assert len(warns) == 1 and warns[0]["code"] == "duplicate_command", warns
    assert warns[0]["id"] == ids[0] and warns[0]["line"] == lines
    assert all(len(answers(run, i)) == 1 for i in ids)
    start = events(run, "start")[-1]
    assert start["live"]["gamma"] == 1.5 and start["live"]["lr"] == 1e-3
    assert not [e for e in events(run, "paused") if e["seq"] > start["seq"]]
    assert events(run, "end")[-1]["reason"] == "completed"


def test_sigterm_while_paused_checkpoints_and_exits(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(tiny(run, "training.epochs=2", "debug.step_delay=0.2"))
    try:
        wait_for(lambda: events(run, "step"), 120, "the first step")
        send(run, "pause")
        paused = wait_for(lambda: events(run, "paused"), 60, "paused")[0]
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("a paused trainer ignored SIGTERM for 60 s")
    finally:
        proc.kill()
    assert rc == 0
    ck = events(run, "checkpoint")[-1]
    assert ck["seq"] > paused["seq"] and ck["step"] == paused["step"]
    assert events(run, "end")[-1]["reason"] == "stopped"
    p = run_trainer(resume_argv(run))  # continues running (not paused), to the end
    assert p.returncode == 0, p.stderr
    assert [e["epoch"] for e in events(run, "epoch")] == [1, 2] and false_warnings(run) == []


def test_run_dir_holding_a_run_is_refused_and_left_unchanged(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    before = tree_bytes(run)
    p = run_trainer(tiny(run, "training.epochs=1", "model.width=16"))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and str(run) in p.stderr and "--resume" in p.stderr, p.stderr
    assert tree_bytes(run) == before
    # a folder `segwatch run` reserved (logs, queued commands, no run yet) is still accepted
    fresh = tmp_path / "reserved"
    fresh.mkdir()
    (fresh / "supervisor.log").write_text("")
    assert run_trainer(tiny(fresh, "training.epochs=1")).returncode == 0
    # the same run restarted before it wrote any checkpoint (a requeued SLURM job) starts again;
    # another config on such a run is still refused
    shutil.rmtree(fresh / "checkpoints")
    other = run_trainer(tiny(fresh, "training.epochs=1", "model.width=16"))
    assert other.returncode == 2 and "already holds a run" in other.stderr
    again = run_trainer(tiny(fresh, "training.epochs=1"))
    assert again.returncode == 0, again.stderr
    assert [s["resumed"] for s in events(fresh, "start")] == [False, False]


def test_resume_set_of_a_live_key_is_a_recorded_adjustment(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    p = run_trainer(resume_argv(run, "training.epochs=2", "lr=0.001"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("run lmsa_focal:") == 1 and "epochs 2..2" in p.stdout, p.stdout
    start = events(run, "start")[-1]
    acks = [a for a in events(run, "ack") if a["seq"] > start["seq"]]
    assert len(acks) == 1 and acks[0]["source"] == "resume --set" and acks[0]["cmd"] == "set"
    assert acks[0]["changes"] == {"epochs": [1, 2], "lr": [5e-4, 1e-3]}
    assert [e["epoch"] for e in events(run, "epoch")] == [1, 2]
    spe, ratio = start["steps_per_epoch"], yaml.safe_load((run / "config.yaml").read_text())["training"]["min_lr_ratio"]
    later = [s for s in events(run, "step") if s["epoch"] == 2]
    assert later and all(s["lr"] == pytest.approx(lr_at(s["step"] - 1, 1e-3, 0, 2 * spe, ratio)) for s in later)
    assert events(run, "epoch")[-1]["epochs"] == 2
    shown = Run(run)  # the cockpit lists it with the other adjustments
    shown.refresh()
    adj = [a for a in shown.state.adjustments if a.source == "resume --set"]
    assert len(adj) == 1 and adj[0].status == "applied" and adj[0].changes["lr"] == [5e-4, 1e-3]
    # kept by the next resume (from the checkpoint), not applied a second time
    p = run_trainer(resume_argv(run, "training.epochs=3"))
    assert p.returncode == 0, p.stderr
    assert events(run, "start")[-1]["live"]["lr"] == 1e-3
    assert len([a for a in events(run, "ack") if a["changes"].get("lr")]) == 1


@pytest.mark.parametrize("item, says", [
    ("model.width=16", "'model.width' is not a live setting"),
    ("training.batch_size=4", "'training.batch_size' is not a live setting"),
    ("loss.focal_gama=1", "'loss.focal_gama' is not a config key"),
    ("lr=5", "lr = 5 is not allowed"),
    ("training.epochs=0", "epochs = 0"),
])
def test_resume_set_that_cannot_apply_is_refused(finished_run, tmp_path, item, says):
    run = copy_run(finished_run, tmp_path)
    before = tree_bytes(run)
    p = run_trainer(resume_argv(run, item))
    assert p.returncode == 2 and says in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert tree_bytes(run) == before


def test_lines_of_the_record_skipped_on_resume_are_counted_in_a_warning(finished_run, tmp_path):
    """Lines of events.jsonl that are not events are skipped when a resume reads the record, and the
    record says how many (a warning), instead of passing over them in silence."""
    run = copy_run(finished_run, tmp_path)
    with open(run / "events.jsonl", "ab") as f:
        f.write(b"not json at all\n[1, 2]\n\n")
    p = run_trainer(resume_argv(run, "training.epochs=2"))
    assert p.returncode == 0, p.stderr
    warns = [w for w in false_warnings(run) if w["code"] == "unreadable_events"]
    assert len(warns) == 1 and warns[0]["message"].startswith("2 line(s) of events.jsonl are not events"), warns
    assert [e["epoch"] for e in events(run, "epoch")] == [1, 2]
