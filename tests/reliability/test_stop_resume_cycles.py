"""Stop at a random moment, resume, twenty times on one run: the record stays true (issue 11).

Each cycle starts the trainer (fresh, then ``--resume``), picks a moment (during training steps,
during validation, during a checkpoint write) and a way (a ``stop`` command or SIGTERM), and
sometimes sends a ``set`` or a pause/resume first. At the end the run is resumed to completion and
its whole record is checked: no null train metric, no warning but the synthetic-data notice,
every epoch and every step exactly once and in order, every command answered exactly once.

``SEGWATCH_STOP_CYCLES`` (default 20) and ``SEGWATCH_STOP_SEED`` change the number of cycles and
the random choices; the seed is in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
from faults import START_NOTICES, answers, events, popen_trainer, trainer_argv, wait_for

from app.health import evaluate
from app.health.rules import load_rules
from app.runlib import Run

RULES = load_rules()

CYCLES = int(os.environ.get("SEGWATCH_STOP_CYCLES", "20"))
SEED = int(os.environ.get("SEGWATCH_STOP_SEED", "20261201"))
SETS = ["data.synthetic_train=16", "data.synthetic_val=8", "debug.step_delay=0.15",
        "debug.checkpoint_write_pause=0.3", f"training.epochs={CYCLES + 2}"]


def _segment(run: Path, start_seq: int, type_: str) -> list[dict]:
    return [e for e in events(run, type_) if e["seq"] > start_seq]


@pytest.mark.slow
def test_stop_at_random_moments_then_resume_twenty_times(tmp_path):
    rng = random.Random(SEED)
    run = tmp_path / "r"
    sent: list[str] = []
    log: list[str] = []
    ck = run / "checkpoints"
    for cycle in range(CYCLES):
        argv = trainer_argv(run, *SETS) if cycle == 0 else ["--resume", str(run), "--device", "cpu"]
        n_starts = len(events(run, "start")) if cycle else 0
        proc = popen_trainer(argv)
        try:
            start = wait_for(lambda: len(events(run, "start")) > n_starts and events(run, "start")[-1], 120,
                             f"cycle {cycle}: the start event (seed {SEED})")
            spe = start["steps_per_epoch"]
            if rng.random() < 0.3:
                sent.append(send_ok(run, "set", values={"gamma": rng.choice([1.0, 1.5, 2.0, 2.5])}))
            if rng.random() < 0.2:
                sent.append(send_ok(run, "pause"))
                wait_for(lambda: _segment(run, start["seq"], "paused"), 60, f"cycle {cycle}: paused")
                sent.append(send_ok(run, "resume"))
            moment = rng.choice(["steps", "validation", "checkpoint"])
            if moment == "steps":
                k = rng.randint(0, spe)
                wait_for(lambda: len(_segment(run, start["seq"], "step")) >= k, 120, f"cycle {cycle}: {k} steps")
            elif moment == "validation":  # after an epoch's last step, before its epoch event
                wait_for(lambda: [s for s in _segment(run, start["seq"], "step") if s["step"] % spe == 0], 120,
                         f"cycle {cycle}: an epoch's last step")
            else:
                wait_for(lambda: list(ck.glob(".*.pt.*.tmp")), 120, f"cycle {cycle}: a checkpoint being written")
            how = rng.choice(["stop", "SIGTERM"])
            if how == "stop":
                sent.append(send_ok(run, "stop"))
            else:
                proc.send_signal(signal.SIGTERM)
            log.append(f"cycle {cycle}: {moment}, {how}")
            rc = proc.wait(timeout=120)
            assert rc == 0, f"seed {SEED}, {log[-1]}: exit {rc}: {proc.stderr.read().decode()[-2000:]}"
        finally:
            proc.kill()
        assert events(run, "end")[-1]["reason"] in ("stopped", "completed"), (SEED, log)
        assert_no_false_red(run, f"seed {SEED}, {log[-1]}")

    final = popen_trainer(["--resume", str(run), "--device", "cpu"])
    try:
        assert final.wait(timeout=300) == 0, final.stderr.read().decode()[-2000:]
    finally:
        final.kill()

    why = f"seed {SEED}; {'; '.join(log)}"
    evs = events(run)
    assert [e["seq"] for e in evs] == list(range(len(evs))), why
    epochs = [e for e in evs if e["type"] == "epoch"]
    total = CYCLES + 2
    assert [e["epoch"] for e in epochs] == list(range(1, total + 1)), why  # continuous, none twice
    for e in epochs:
        assert e["train_loss"] is not None and e["train_f"] is not None and e["val_f"] is not None, (why, e)
        assert "nonfinite" not in e, (why, e)
    spe = evs[0]["steps_per_epoch"]
    assert [e["step"] for e in evs if e["type"] == "step"] == list(range(1, total * spe + 1)), why
    assert [w for w in evs if w["type"] == "warning" and w["code"] not in START_NOTICES] == [], why
    lines = [json.loads(x) for x in (run / "control.jsonl").read_text().splitlines()]
    assert [c["id"] for c in lines] == sent
    for cid in sent:
        got = answers(run, cid)
        assert [a["type"] for a in got] == ["ack"], (why, cid, got)
    assert evs[-1]["type"] == "end" and evs[-1]["reason"] == "completed", why
    assert_no_false_red(run, why)


def assert_no_false_red(run: Path, why: str) -> None:
    """What the cockpit would say of the record: no NaN/Inf signal (the false red of a resumed
    epoch without train numbers), and the run's state the record's own, not crashed. (Whether a
    tiny synthetic model meets the F targets is not this test's business.)"""
    shown = Run(run)
    shown.refresh()
    st = shown.state
    verdict = evaluate(list(st.history()), RULES, live=dict(st.live or {}), run_state=st.status,
                       total_epochs=st.total_epochs, warnings=list(st.warnings or ()))
    nonfinite = [s for s in verdict.signals if s.id == "no_nonfinite"]
    assert nonfinite and nonfinite[0].state != "failed", (why, nonfinite)
    assert st.status in ("stopped", "finished", "completed"), (why, st.status_detail())


def send_ok(run: Path, cmd: str, **fields) -> str:
    from faults import send

    return send(run, cmd, **fields)
