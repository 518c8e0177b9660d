"""RunState: the run rebuilt from a crafted record."""

from __future__ import annotations

import json
from pathlib import Path

from _runrecord import Record

from app.runlib import Run, RunState
from app.runlib.tail import JsonlTail


def replay(run_dir) -> RunState:
    st = RunState(run_dir)
    for n, cmd in JsonlTail(run_dir / "control.jsonl").read_new_numbered():
        st.apply_command(cmd, n)
    for ev in JsonlTail(run_dir / "events.jsonl").read_new():
        st.apply(ev)
    return st


def test_full_record(tmp_path):
    rec = Record(tmp_path / "r1")
    rec.start()
    rec.epochs_run(1, 2, f_of=lambda e: [0.0, 0.5, 0.4][e])
    c1 = rec.command("set", {"lr": 0.0003}, reason="too hot")
    rec.ack(c1, epoch=3)
    c2 = rec.command("set", {"gamma": 99})
    rec.nack(c2, "gamma = 99 is not allowed: a finite number in [0, 10]", line=2)
    rec.warning("nonfinite_loss", epoch=3)
    rec.warning("synthetic_data")
    rec.event("checkpoint", kind="best", path="checkpoints/best.pt", epoch=2, step=rec.step)
    rec.epochs_run(3, 3, f_of=lambda e: 0.45)
    rec.end("completed", epoch=3, best_val_f=0.5, best_epoch=2)

    st = replay(rec.dir)
    assert st.name == "r1"
    assert st.config["training"]["epochs"] == 10
    assert st.status == "finished" and st.status_detail() == "finished"
    assert [e["epoch"] for e in st.history()] == [1, 2, 3]
    assert (st.best_val_f, st.best_epoch) == (0.5, 2)
    assert st.total_epochs == 10
    assert st.live["lr"] == 0.0003 and st.live["gamma"] == 2.0
    assert [a.status for a in st.adjustments] == ["applied", "refused"]
    a1, a2 = st.adjustments
    assert (a1.id, a1.line, a1.reason, a1.changes) == (c1["id"], 1, "too hot", {"lr": [0.0005, 0.0003]})
    assert a1.answer_epoch == 3 and a1.answer_step == 5
    assert a1.summary() == "lr 5.00e-04->3.00e-04 applied"
    assert a2.summary().startswith("gamma 99 refused: gamma = 99")
    assert st.pending() == []
    assert st.nonfinite_seen and st.warning_counts == {"nonfinite_loss": 1, "synthetic_data": 1}
    assert st.checkpoints["best"]["epoch"] == 2
    assert st.last_step["step"] == 6 and len(st.steps) == 6
    assert st.last_event_t is not None and st.bad_lines == 0


def test_starting_running_paused(tmp_path):
    rec = Record(tmp_path / "r")
    st = RunState(rec.dir)
    assert st.status == "starting"
    assert st.live["lr"] == 0.0005 and st.total_epochs == 10  # from config.yaml before any event
    st.apply(rec.start(epochs=12))
    assert st.status == "running" and st.total_epochs == 12
    st.apply(rec.event("paused", epoch=1, step=7, id="x"))
    assert st.status == "paused" and st.status_detail() == "paused at epoch 1, step 7"
    st.apply(rec.event("resumed", epoch=1, step=0, id="y"))
    assert st.status == "running"


def test_resume_replaces_the_lost_segment(tmp_path):
    rec = Record(tmp_path / "r")
    rec.start()
    rec.epochs_run(1, 5, f_of=lambda e: 0.1 * e)  # best 0.5 at epoch 5 (lost after the resume)
    rec.start(resume_epoch=3)
    rec.epochs_run(4, 6, f_of=lambda e: e / 100)
    st = replay(rec.dir)
    hist = st.history()
    assert [e["epoch"] for e in hist] == [1, 2, 3, 4, 5, 6]
    assert [e["seq"] for e in hist] == sorted(e["seq"] for e in hist)  # 4, 5 are the new ones
    assert hist[3]["val_f"] == 0.04 and hist[4]["val_f"] == 0.05
    assert st.start["resume_epoch"] == 3
    # the step curve does not zig-zag: steps are monotone after the replacement
    steps = [p.step for p in st.steps]
    assert steps == sorted(steps)
    assert all(p.epoch <= 3 for p in st.steps[:6])


def test_resume_recomputes_best(tmp_path):
    rec = Record(tmp_path / "r")
    st = RunState(rec.dir)
    st.apply(rec.start())
    for e, f in [(1, 0.3), (2, 0.9)]:
        st.apply(rec.epoch_event(e, f))  # no best_* fields: computed from val_f
    assert (st.best_val_f, st.best_epoch) == (0.9, 2)
    st.apply(rec.start(resume_epoch=1))
    assert (st.best_val_f, st.best_epoch) == (0.3, 1)


def test_answer_before_command_is_recorded(tmp_path):
    rec = Record(tmp_path / "r")
    st = RunState(rec.dir)
    st.apply(rec.start())
    cmd_a = {"v": 1, "id": "aaa", "t": 1.0, "cmd": "set", "values": {"lr": 0.001}}
    cmd_b = {"v": 1, "id": "bbb", "t": 2.0, "cmd": "pause"}
    st.apply_command(cmd_a, 1)
    # the ack for b is read before b's command line
    st.apply(rec.event("ack", id="bbb", cmd="pause", changes={}, epoch=1, step=3))
    assert st.adjustment("bbb").status == "applied" and st.adjustment("bbb").line is None
    assert [a.id for a in st.pending()] == ["aaa"]
    st.apply_command(cmd_b, 2)
    b = st.adjustment("bbb")
    assert (b.line, b.cmd, b.sent_t, b.status) == (2, "pause", 2.0, "applied")
    assert [a.id for a in st.adjustments] == ["aaa", "bbb"]
    # a duplicate line with the same id is not a new adjustment
    st.apply_command(cmd_a, 3)
    assert len(st.adjustments) == 2 and st.adjustment_log.duplicates == 1
    # a nack for a line without id is matched by line
    st.apply_command({"v": 1, "cmd": "set"}, 4)
    st.apply(rec.event("nack", id=None, cmd="set", reason="command has no 'id'", line=4))
    assert st.adjustments[-1].status == "refused" and st.adjustments[-1].line == 4
    assert len(st.adjustments) == 3


def test_answers_for_epochs_update_total(tmp_path):
    rec = Record(tmp_path / "r")
    st = RunState(rec.dir)
    st.apply(rec.start())
    st.apply_command({"v": 1, "id": "e", "cmd": "set", "values": {"epochs": 20}}, 1)
    assert st.pending()[0].summary() == "epochs 20 pending"
    st.apply(rec.event("ack", id="e", cmd="set", changes={"epochs": [10, 20]}, epoch=1, step=1))
    assert st.total_epochs == 20 and st.live["epochs"] == 20


def test_crashed_via_exit_json_signal_9(tmp_path):
    rec = Record(tmp_path / "r")
    rec.start(pid=999_999_999)  # no such process
    rec.epochs_run(1, 1)
    (rec.dir / "stderr.log").write_text("loading\n" + "x" * 20000 + "\nTraceback (most recent call last):\nboom\n\n")
    (rec.dir / "exit.json").write_text(json.dumps({"returncode": -9, "signal": 9, "t": rec.t + 5}))
    run = Run(rec.dir)
    run.refresh()
    st = run.state
    assert st.status == "crashed"
    assert st.crash_reason == "killed by SIGKILL (signal 9)"
    assert st.status_detail() == "crashed: killed by SIGKILL (signal 9)"
    assert run.stderr_tail(2) == ["Traceback (most recent call last):", "boom"]
    assert len(run.stderr_tail(50)) == 4


def test_crashed_exit_code_and_no_events(tmp_path):
    rec = Record(tmp_path / "r")
    run = Run(rec.dir)
    run.refresh()
    assert run.state.status == "starting"
    (rec.dir / "exit.json").write_text(json.dumps({"returncode": 1, "signal": None, "t": 5.0}))
    run.refresh()
    assert run.state.status_detail() == "crashed: exit code 1"


def test_stale_exit_json_before_a_resume_is_ignored(tmp_path):
    rec = Record(tmp_path / "r")
    (rec.dir / "exit.json").write_text(json.dumps({"returncode": -9, "signal": 9, "t": 1.0}))
    (rec.dir / "trainer.pid").write_text("1\n")  # pid 1 exists but is not a trainer
    rec.start()
    run = Run(rec.dir)
    run.refresh()
    assert run.state.exit_info is None
    assert run.process_alive() is False and run.state.status == "crashed"
    assert "gone" in run.state.crash_reason


def test_end_event_wins_over_exit(tmp_path):
    rec = Record(tmp_path / "r")
    rec.start()
    rec.end("crashed", epoch=0, error="RuntimeError: CUDA out of memory")
    (rec.dir / "exit.json").write_text(json.dumps({"returncode": 1, "signal": None, "t": rec.t + 1}))
    run = Run(rec.dir)
    run.refresh()
    assert run.state.status_detail() == "crashed: RuntimeError: CUDA out of memory"


def test_steps_are_bounded(tmp_path):
    st = RunState(max_steps=100)
    for i in range(1, 10_001):
        st.apply({"v": 1, "seq": i, "t": float(i), "type": "step", "epoch": 1 + i // 1000, "step": i,
                  "loss": 1.0 / i, "lr": 1e-3})
    assert len(st.steps) < 100
    steps = [p.step for p in st.steps]
    assert steps == sorted(steps) and steps[-1] == 10_000 and steps[0] == 1
    assert steps[-40:] == list(range(10_000 - 39, 10_001))  # recent points at full resolution
    assert st.steps_seen == 10_000


def test_warnings_bounded_and_nonsense_events_counted():
    st = RunState(max_warnings=5)
    for i in range(12):
        st.apply({"type": "warning", "code": "nonfinite_grad" if i == 0 else "w", "seq": i})
    assert len(st.warnings) == 5 and st.warnings[-1]["seq"] == 11
    assert st.warning_counts["w"] == 11 and st.nonfinite_seen
    st.apply({"type": "epoch", "epoch": "three"})
    st.apply({"type": "epoch"})
    st.apply({"type": "mystery"})
    st.apply({"type": ["unhashable"]})
    st.apply({"type": "step", "step": "x", "epoch": None, "loss": "nan", "lr": True})  # kept, fields sanitised
    assert st.steps[-1] == (0, 0, None, None) and st.last_seq == 11
    assert st.bad_events == 3 and st.epochs == {}  # the step's wrong-typed fields count too
    st.apply({"type": "epoch", "epoch": 1, "val_f": None, "nonfinite": ["val_f"]})
    assert st.history()[0]["epoch"] == 1


def test_an_old_end_event_without_a_validation_has_no_best(tmp_path):
    """Records written before the trainer wrote null there say best_val_f -1.0 at best_epoch 0."""
    rec = Record(tmp_path / "r")
    rec.start()
    rec.end("stopped", epoch=0, best_val_f=-1.0, best_epoch=0)
    st = replay(rec.dir)
    assert st.status == "stopped" and st.best_val_f is None and st.best_epoch is None


def test_a_broken_config_meta_or_plan_file_is_a_note_on_the_run(tmp_path):
    """config.yaml, meta.json or plan.json that cannot be parsed (or holds no mapping) is shown as a
    note on the run, not passed over in silence; a good file later clears the note."""
    rec = Record(tmp_path / "r")
    rec.start()
    (rec.dir / "config.yaml").write_text("training: [unclosed\n")
    (rec.dir / "meta.json").write_text("{not json")
    (rec.dir / "plan.json").write_text("[1, 2]")
    run = Run(rec.dir)
    run.refresh()
    notes = run.state.file_notes
    assert notes["config.yaml"].startswith("config.yaml cannot be read (") and notes["config.yaml"].endswith("; ignored")
    assert notes["meta.json"].startswith("meta.json cannot be read (JSONDecodeError")
    assert notes["plan.json"] == "plan.json holds a list, not a mapping; ignored"
    assert "config.yaml cannot be read" in run._read_note()
    (rec.dir / "meta.json").write_text("{}")
    run.refresh()
    assert "meta.json" not in run.state.file_notes


def test_run_state_attributes_have_one_owner():
    """Run hands RunState what it saw beside the record through RunState's methods
    (observe_reading, observe_process, expect_restart); no app module writes its attributes."""
    import sys

    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tools.house_figures import source_trees, written_outside

    assert written_outside(source_trees(root), "RunState") == []


def test_the_step_shown_is_the_last_one_any_event_names(tmp_path):
    """Step events come every few steps; a stop's ack and its checkpoint say where the trainer really
    stopped, so a stopped run does not show an older step than its own 'stopped after step N'."""
    from app.health import load_rules
    from app.snapshot import build_view

    rec = Record(tmp_path / "r")
    rec.start()
    rec.event("step", epoch=1, step=10, loss=2.0, lr=1e-4, gamma=2.0, samples_per_s=2.0, data_wait=0.0)
    stop = rec.command("stop")
    rec.event("ack", id=stop["id"], cmd="stop", changes={}, epoch=1, step=16)
    rec.event("checkpoint", kind="last", path="checkpoints/last.pt", epoch=0, step=16)
    rec.event("warning", code="odd", message="a hostile step", epoch=1, step=10**9)  # not a step-naming event
    rec.event("nack", id="x", cmd="set", reason="bad", line=9, step="17")  # not an int: ignored
    rec.end("stopped", epoch=0)
    st = replay(rec.dir)
    assert st.reported_step == 16
    run = Run(rec.dir)
    run.refresh()
    assert build_view(0, run, load_rules()).step == 16  # the header's "step N"
    rec.start()  # a resume: the new segment says where it is, nothing before it does
    st = replay(rec.dir)
    assert st.reported_step is None
    rec.event("step", epoch=1, step=17, loss=2.0, lr=1e-4, gamma=2.0, samples_per_s=2.0, data_wait=0.0)
    assert replay(rec.dir).reported_step == 17
    rec.event("ack", id="y", cmd="set", changes={}, epoch=1, step=10**12)  # someone else's line in the record
    rec.event("step", epoch=1, step=18, loss=2.0, lr=1e-4, gamma=2.0, samples_per_s=2.0, data_wait=0.0)
    assert replay(rec.dir).reported_step == 18  # the next real step replaces it: nothing sticks
