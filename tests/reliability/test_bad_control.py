"""Bad control commands: whatever lands in control.jsonl, each command is answered (ack or nack)
exactly once, a repeated id is never applied twice, and the trainer goes on.

First a generated corpus against the trainer's own Steering (fast), then a real trainer fed a
battery of bad lines and two monitors (processes) appending at once.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections import Counter

from faults import answers, events, popen_trainer, send, trainer_argv, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.runlib import Run
from trainer.core import live as live_mod
from trainer.control import COMMANDS
from trainer.record import EventWriter, read_events
from trainer.steer import Steering

LIVE = {"lr": 5e-4, "gamma": 2.0, "alpha": 0.25, "use_focal": True, "dice_weight": 1.0,
        "use_class_weights": False, "dropout": 0.15, "weight_decay": 1e-4, "warmup_epochs": 1,
        "epochs": 20, "grad_clip": 1.0, "patience": 0, "rotation": 20.0,
        "scale_range": [0.85, 1.15], "hflip": True}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-4, 0.5, 1.0, 1.5, 0, -1, 1e308]),
    st.text(max_size=8),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=19) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=25)
ids = st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.text(max_size=3), st.integers(), st.none(),
                st.just("x" * 300), st.lists(st.integers(), max_size=2))
commands = st.fixed_dictionaries(
    {"id": ids, "cmd": st.one_of(st.sampled_from(COMMANDS), st.text(max_size=6), st.integers())},
    optional={"v": st.sampled_from([1, 1, 1, 2, "1", None, 1.0]),
              "values": st.one_of(st.dictionaries(st.sampled_from([*live_mod.LIVE_KEYS, "batch_size", "gama", "x"]),
                                                  json_values, max_size=3), json_values),
              "reason": json_values, "extra": json_values},
)
raw_lines = st.one_of(
    commands.map(lambda c: json.dumps(c, allow_nan=True).encode()),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 50).map(lambda n: b'{"v":1,"id":"deep","cmd":"set","values":{"alpha":' + b"[" * n * 1000 + b"]" * n * 1000 + b"}}"),
    st.just(b'{"v":1,"id":"big","cmd":"set","values":{"lr":' + b"9" * 400 + b"}}"),
    st.just(b'{"v":1,"id":"huge","cmd":"set","values":{"lr":' + b"9" * 5000 + b"}}"),
    st.just(b'{"v":1,"id":"nan","cmd":"set","values":{"lr":NaN}}'),
    st.just(b'{"v":1,"id":"a","cmd":"set","values":{"gamma":1.5}}'),
)


def has_id(raw: bytes) -> str | None:
    """The protocol's rule (docs/control.md): a JSON object with a non-empty string id <= 200 chars."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and 0 < len(obj["id"]) <= 200:
        return obj["id"]
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.lists(st.lists(raw_lines, min_size=1, max_size=6), min_size=1, max_size=4))
def test_generated_control_lines_are_answered_exactly_once(tmp_path_factory, batches):
    d = tmp_path_factory.mktemp("ctl")
    ctl = d / "control.jsonl"
    os.close(os.open(ctl, os.O_WRONLY | os.O_CREAT, 0o600))
    ev = EventWriter(d / "events.jsonl")
    applied: list[dict] = []
    s = Steering(ctl, ev, dict(LIVE), applied.append, is_main=True)
    lines: list[bytes] = []
    for batch in batches:
        with open(ctl, "ab") as f:
            for raw in batch:
                f.write(raw + b"\n")
        lines += batch
        s.poll(epoch=2, step=10 * len(lines))  # must never raise
    ev.close()
    got = read_events(d / "events.jsonl")
    by_id = Counter(e["id"] for e in got if e["type"] in ("ack", "nack") and e["id"] is not None)
    by_line = Counter(e["line"] for e in got if e["type"] == "nack" and e["id"] is None)
    first: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        cid = has_id(raw)
        if cid is not None:
            first.setdefault(cid, n)
        elif raw.strip():
            assert by_line[n] == 1, (n, raw[:80], by_line)
    assert dict(by_id) == {cid: 1 for cid in first}, (by_id, first)
    dups = [e for e in got if e["type"] == "warning" and e["code"] == "duplicate_command"]
    assert len(dups) == sum(1 for raw in lines if has_id(raw) is not None) - len(first)
    for k, v in s.live.items():  # whatever was applied is a valid live value
        key = live_mod.LIVE_KEYS[k]
        assert key.check(v) and (not isinstance(v, float) or math.isfinite(v)), (k, v)


def _writer(run_dir: str, tag: str, n: int, barrier) -> None:
    r = Run(run_dir)
    r.refresh()
    barrier.wait()
    for i in range(n):
        r.send("set", {"gamma": round(1.0 + (i % 10) / 10, 1)}, reason=f"{tag} {i}", source=tag)


BAD = [
    b"{not json\n", b"\x00\xff\xfe garbage \x80\n", b"[1, 2]\n", b'"just a string"\n', b"\n", b"   \n",
    b'{"v": 1, "cmd": "set", "values": {"lr": 1e-4}}\n',  # no id
    b'{"v": 1, "id": "u1", "cmd": "explode"}\n',
    b'{"v": 1, "id": "u2", "cmd": "set", "values": {"learning_rate": 1e-4}}\n',
    b'{"v": 1, "id": "u3", "cmd": "set", "values": {"gama": 1.0}}\n',
    b'{"v": 1, "id": "u4", "cmd": "set", "values": {"lr": NaN}}\n',
    b'{"v": 1, "id": "u5", "cmd": "set", "values": {"lr": -0.1}}\n',
    b'{"v": 1, "id": "u6", "cmd": "set", "values": {"lr": 1e308}}\n',
    b'{"v": 1, "id": "u7", "cmd": "set", "values": {"lr": ' + b"9" * 400 + b"}}\n",
    b'{"v": 1, "id": "u8", "cmd": "set", "values": {"alpha": ' + b"[" * 100_000 + b"}}\n",
    b"[" * 100_000 + b"\n",
    b'{"v": 1, "id": "u9", "cmd": "set", "values": {"batch_size": 4}}\n',
    b'{"v": 7, "id": "u10", "cmd": "set", "values": {"lr": 1e-4}}\n',
    b'{"v": 1, "id": "u11", "cmd": "set", "values": {"epochs": 100000000}}\n',
    b'{"v": 1, "id": "' + b"x" * 2_000_000 + b'", "cmd": "stop"}\n',  # a 2 MB line
    b'{"v": 1, "id": "good1", "cmd": "set", "values": {"dropout": 0.3}}\n',
    b'{"v": 1, "id": "good1", "cmd": "set", "values": {"dropout": 0.5}}\n',  # repeated id: not applied
]


def test_real_trainer_answers_every_bad_line_once_and_goes_on(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=3", "debug.step_delay=0.05"))
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 120, "the first step")
        pause = send(run, "pause")  # hold the run while the commands arrive (it answers while paused)
        wait_for(lambda: answers(run, pause), 60, "the pause ack")
        for raw in BAD:
            send(run, "", raw=raw)
        # two monitors appending at once, through the run library (one write per line, O_APPEND)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(2)
        writers = [ctx.Process(target=_writer, args=(str(run), tag, 40, barrier)) for tag in ("m1", "m2")]
        for w in writers:
            w.start()
        for w in writers:
            w.join(60)
            assert w.exitcode == 0
        last = send(run, "set", values={"gamma": 0.5})
        wait_for(lambda: answers(run, last), 120, "the answer to the last command")
        assert events(run, "step")[-1]["step"] == events(run, "paused")[0]["step"]  # held meanwhile
        send(run, "resume")
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    evs = events(run)
    assert evs[-1]["type"] == "end" and evs[-1]["reason"] == "completed"
    got = [e for e in evs if e["type"] in ("ack", "nack")]
    by_id = Counter(e["id"] for e in got if e["id"])
    assert all(n == 1 for n in by_id.values()), by_id
    for u in [f"u{i}" for i in range(1, 12) if i != 8]:  # u8 does not parse: nacked by line
        assert by_id[u] == 1 and next(e for e in got if e["id"] == u)["type"] == "nack", u
    nacked_lines = {e["line"] for e in got if e["id"] is None}
    lines = (run / "control.jsonl").read_bytes().split(b"\n")
    for n, raw in enumerate(lines, 1):  # id-less, unparseable or over-long: nacked by its line number
        if raw.strip() and has_id(raw) is None:
            assert n in nacked_lines, (n, raw[:60])
    good = [e for e in got if e["id"] == "good1"]
    assert [g["type"] for g in good] == ["ack"] and good[0]["changes"]["dropout"][1] == 0.3
    assert any(w["code"] == "duplicate_command" for w in events(run, "warning"))
    # 80 commands from two writers: whole lines, each applied exactly once, in file order
    sent = [json.loads(x) for x in lines if x.startswith(b'{"v": 1, "id"') and b'"source": "m' in x]
    assert len(sent) == 80 and Counter(c["source"] for c in sent) == {"m1": 40, "m2": 40}
    assert all(by_id[c["id"]] == 1 and next(e for e in got if e["id"] == c["id"])["type"] == "ack" for c in sent)
    r = Run(run)
    r.refresh()
    assert r.state.status == "finished" and not r.state.pending()
    assert r.state.live["dropout"] == 0.3 and r.state.live["gamma"] == 0.5
