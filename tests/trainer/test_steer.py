"""Control on the trainer side: every command answered once, bad ones nacked, resume-safe."""

import json
import os

import pytest

from trainer.record import EventWriter, read_events
from trainer.steer import Steering

LIVE = {"lr": 5e-4, "gamma": 2.0, "alpha": 0.25, "use_focal": True, "dice_weight": 1.0,
        "use_class_weights": False, "dropout": 0.15, "weight_decay": 1e-4, "warmup_epochs": 10,
        "epochs": 250, "grad_clip": 1.0, "patience": 0, "rotation": 20.0,
        "scale_range": [0.85, 1.15], "hflip": True}


@pytest.fixture
def run(tmp_path):
    ctl = tmp_path / "control.jsonl"
    os.close(os.open(ctl, os.O_WRONLY | os.O_CREAT, 0o600))
    applied = []
    ev = EventWriter(tmp_path / "events.jsonl")
    s = Steering(ctl, ev, dict(LIVE), applied.append, is_main=True)

    def send(obj):
        with open(ctl, "a") as f:
            f.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")

    def answers():
        return [e for e in read_events(tmp_path / "events.jsonl") if e["type"] in ("ack", "nack")]

    return s, send, answers, applied, tmp_path


def test_set_is_acked_with_old_and_new_and_applied(run):
    s, send, answers, applied, _ = run
    send({"v": 1, "id": "a", "cmd": "set", "values": {"lr": 3e-4, "gamma": 1.5}, "reason": "preset: unstable"})
    s.poll(epoch=4, step=99)
    (ack,) = answers()
    assert ack["type"] == "ack" and ack["id"] == "a"
    assert ack["changes"] == {"lr": [5e-4, 3e-4], "gamma": [2.0, 1.5]}
    assert (ack["epoch"], ack["step"]) == (4, 100)
    assert applied == [{"lr": 3e-4, "gamma": 1.5}] and s.live["lr"] == 3e-4 and s.live["gamma"] == 1.5


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ({"v": 1, "cmd": "set", "values": {"lr": 1e-4}}, "no 'id'"),
        ({"v": 1, "id": "x", "cmd": "explode"}, "unknown command"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"lr": -1}}, "lr = -1 is not allowed"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"lr": "NaN"}}, "not allowed"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"gamma": -0.5}}, "gamma"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"alpha": 1.5}}, "alpha"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"gama": 1.5}}, "did you mean 'gamma'"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"batch_size": 8}}, "needs a restart"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"epochs": 2}}, "below the epoch in progress"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {"lr": 1e-4, "dropout": 1.0}}, "dropout"),
        ({"v": 1, "id": "x", "cmd": "set", "values": {}}, "non-empty"),
        ({"v": 2, "id": "x", "cmd": "set", "values": {"lr": 1e-4}}, "version"),
    ],
)
def test_invalid_commands_are_nacked_and_change_nothing(run, line, reason):
    s, send, answers, applied, _ = run
    send(line)
    s.poll(epoch=5, step=10)
    (nack,) = answers()
    assert nack["type"] == "nack" and reason in nack["reason"] and nack["line"] == 1
    assert applied == [] and s.live == LIVE


def test_repeated_id_is_applied_once(run):
    s, send, answers, applied, tmp = run
    cmd = {"v": 1, "id": "same", "cmd": "set", "values": {"lr": 1e-4}}
    send(cmd)
    send(cmd)
    s.poll(1, 0)
    send(cmd)
    s.poll(1, 1)
    assert len(answers()) == 1 and len(applied) == 1
    warns = [e for e in read_events(tmp / "events.jsonl") if e["type"] == "warning"]
    assert [w["code"] for w in warns] == ["duplicate_command", "duplicate_command"]


def test_partial_line_waits_for_its_end(run):
    s, _, answers, _, tmp = run
    with open(tmp / "control.jsonl", "a") as f:
        f.write('{"v":1,"id":"p","cmd":"pa')
    s.poll(1, 0)
    assert answers() == []
    with open(tmp / "control.jsonl", "a") as f:
        f.write('use"}\n')
    s.poll(1, 0)
    assert s.paused and answers()[0]["id"] == "p"


def test_pause_resume_stop_checkpoint_requests(run):
    s, send, answers, _, tmp = run
    send({"v": 1, "id": "1", "cmd": "pause"})
    s.poll(1, 0)
    assert s.paused
    send({"v": 1, "id": "2", "cmd": "resume"})
    s.poll(1, 0)
    assert not s.paused
    send({"v": 1, "id": "3", "cmd": "checkpoint"})
    assert s.poll(1, 0).checkpoint == "3"
    send({"v": 1, "id": "4", "cmd": "stop"})
    assert s.poll(1, 0).stop == "4"
    assert [a["id"] for a in answers()] == ["1", "2", "3", "4"]
    types = [e["type"] for e in read_events(tmp / "events.jsonl")]
    assert "paused" in types and "resumed" in types


def test_resume_neither_repeats_nor_forgets(run):
    s, send, answers, applied, tmp = run
    send({"v": 1, "id": "before", "cmd": "set", "values": {"gamma": 1.5}})
    s.poll(1, 0)
    checkpoint_answered = sorted(s.answered)  # a checkpoint is written here
    send({"v": 1, "id": "after", "cmd": "set", "values": {"lr": 2e-4}})
    s.poll(2, 50)  # acked, then the process is killed before the next checkpoint
    s.events.close()
    # the resumed trainer: checkpoint state (gamma 1.5 applied, 'after' unknown) + the record
    applied2 = []
    ev = EventWriter(tmp / "events.jsonl")
    s2 = Steering(tmp / "control.jsonl", ev, {**LIVE, "gamma": 1.5}, applied2.append, is_main=True)
    replay = s2.restore(checkpoint_answered, read_events(tmp / "events.jsonl"))
    assert replay == {"lr": 2e-4} and s2.live["lr"] == 2e-4 and s2.live["gamma"] == 1.5
    s2.poll(2, 0)  # re-reads control.jsonl from the start
    assert len(answers()) == 2  # nothing answered twice


def test_control_file_writable_by_others_is_refused(run):
    s, send, answers, applied, tmp = run
    send({"v": 1, "id": "a", "cmd": "set", "values": {"lr": 1e-4}})
    os.chmod(tmp / "control.jsonl", 0o666)
    s.poll(1, 0)
    s.poll(1, 1)
    warns = [e for e in read_events(tmp / "events.jsonl") if e["type"] == "warning"]
    assert len(warns) == 1 and warns[0]["code"] == "control_refused" and "chmod 600" in warns[0]["message"]
    assert applied == []
    os.chmod(tmp / "control.jsonl", 0o600)
    s.poll(1, 2)
    assert applied == [{"lr": 1e-4}]


def test_config_key_names_point_to_the_live_name(run):
    s, send, answers, applied, _ = run
    send({"v": 1, "id": "k", "cmd": "set", "values": {"learning_rate": 1e-4}})
    s.poll(1, 0)
    assert "send the live name 'lr'" in answers()[0]["reason"]


def test_a_replaced_control_file_is_read_from_its_start(run):
    s, send, answers, applied, tmp = run
    send({"v": 1, "id": "a", "cmd": "set", "values": {"lr": 1e-4}})
    s.poll(1, 0)
    new = tmp / "control.new"
    lines = [json.dumps({"v": 1, "id": "a", "cmd": "set", "values": {"lr": 1e-4}}),
             json.dumps({"v": 1, "id": "b", "cmd": "set", "values": {"gamma": 1.0}})]
    new.write_text("\n".join(lines) + "\n")
    os.chmod(new, 0o600)
    os.replace(new, tmp / "control.jsonl")
    s.poll(1, 1)
    assert [a["id"] for a in answers()] == ["a", "b"] and applied == [{"lr": 1e-4}, {"gamma": 1.0}]


def test_a_resumed_reader_continues_at_the_checkpoints_position_silently(run):
    s, send, answers, applied, tmp = run
    send({"v": 1, "id": "a", "cmd": "set", "values": {"gamma": 1.5}})
    s.poll(1, 0)
    position, ckpt_answered = s.reader.position(), sorted(s.answered)  # a checkpoint here
    send({"v": 1, "id": "b", "cmd": "pause"})
    send({"v": 1, "id": "c", "cmd": "set", "values": {"lr": 1e-4}})
    s.poll(1, 1)  # answered after the checkpoint, then the trainer is killed
    s.events.close()
    assert position["line_no"] == 1 and position["offset"] > 0
    ev = EventWriter(tmp / "events.jsonl")
    s2 = Steering(tmp / "control.jsonl", ev, {**LIVE, "gamma": 1.5}, [].append, is_main=True)
    assert s2.reader.seek(position)
    replay = s2.restore(ckpt_answered, read_events(tmp / "events.jsonl"), epoch=2)
    assert replay == {"lr": 1e-4}
    s2.poll(2, 0)
    assert not s2.paused  # the old pause is not applied again
    send({"v": 1, "id": "b", "cmd": "pause"})  # a real duplicate, written after the resume
    s2.poll(2, 1)
    warns = [e for e in read_events(tmp / "events.jsonl") if e["type"] == "warning"]
    assert [(w["code"], w["id"], w["line"]) for w in warns] == [("duplicate_command", "b", 4)]
    assert len(answers()) == 3


def test_a_position_the_file_no_longer_holds_is_not_used(run):
    s, send, answers, applied, tmp = run
    send({"v": 1, "id": "a", "cmd": "pause"})
    s.poll(1, 0)
    pos = s.reader.position()
    os.truncate(tmp / "control.jsonl", 3)
    assert not Steering(tmp / "control.jsonl", s.events, dict(LIVE), [].append, is_main=True).reader.seek(pos)
    assert not s.reader.seek({"offset": "1", "line_no": 0})


@pytest.mark.parametrize("raw, expect", [
    # a fragment merged with the command after it: the fragment nacked by line, the command answered
    (b'{"v":1,"id":"x","cmd":"set","values":{"gamma"{"v":1,"id":"b","cmd":"pause"}', [None, "b"]),
    # two whole commands on one line (a writer that forgot the newline): both answered
    (b'{"v":1,"id":"a","cmd":"stop"}{"v":1,"id":"b","cmd":"pause"}', ["a", "b"]),
    # binary garbage before a command
    (b'\xff\xfe\x00{"v":1,"id":"q","cmd":"resume"}', [None, "q"]),
    # nothing recoverable: one nack for the line
    (b'{"v":1,"id":"x","cmd":"set","values":{"gamma"', [None]),
    (b'{"x": {"id": "a", "cmd": "stop"}}', [None]),
    (b'[' * 100_000, [None]),
])
def test_commands_merged_onto_a_torn_line_are_each_answered(run, raw, expect):
    s, send, answers, applied, tmp = run
    with open(tmp / "control.jsonl", "ab") as f:
        f.write(raw + b"\n")
    s.poll(1, 0)
    got = answers()
    assert [a["id"] for a in got] == expect and all(a["line"] == 1 for a in got)
    assert [a["type"] for a in got] == ["nack" if i is None else "ack" for i in expect]
