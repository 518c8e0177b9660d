"""events.jsonl writer: whole lines, monotonic seq across reopen, torn lines terminated, NaN as null."""

import json
import math

from trainer.record import EventWriter, atomic_write_text, last_seq_and_tail, read_events


def lines(path):
    return path.read_bytes().split(b"\n")


def test_events_are_whole_lines_with_version_seq_and_time(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    w.emit("start", name="x")
    w.emit("step", loss=1.5)
    w.close()
    evs = [json.loads(line) for line in lines(p) if line]
    assert [e["seq"] for e in evs] == [0, 1]
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in evs)
    assert p.read_bytes().endswith(b"\n")


def test_seq_continues_after_reopen_and_a_torn_line_is_terminated(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    for i in range(5):
        w.emit("step", i=i)
    w.close()
    with open(p, "ab") as f:
        f.write(b'{"v":1,"seq":5,"ty')  # the process died mid-write
    assert last_seq_and_tail(p) == (4, True)
    w = EventWriter(p)
    ev = w.emit("start", resumed=True)
    w.close()
    assert ev["seq"] == 5
    evs = read_events(p)
    assert [e["seq"] for e in evs] == [0, 1, 2, 3, 4, 5]
    assert lines(p)[-2].startswith(b'{"v":1,"seq":5,"t"')


def test_nonfinite_numbers_become_null_and_are_listed(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    ev = w.emit("epoch", val_loss=float("nan"), per_class_f=[0.5, float("inf")], val_f=0.3)
    w.close()
    raw = json.loads(lines(p)[0])
    assert raw["val_loss"] is None and raw["per_class_f"] == [0.5, None]
    assert raw["nonfinite"] == ["per_class_f", "val_loss"]
    assert ev["val_f"] == 0.3 and not math.isnan(raw["val_f"])


def test_last_seq_found_far_from_the_end(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    w.emit("step")
    w.close()
    with open(p, "ab") as f:
        f.write(b"x" * 200_000 + b"\n")  # one huge garbage line after the last event
    assert last_seq_and_tail(p) == (0, False)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "meta.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["meta.json"]


def test_read_events_counts_what_it_skips(tmp_path):
    from trainer.record import read_events

    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"type": "a"}\nnot json\n\n[1]\n{"type": "b"}\n{"torn": ')
    skipped: list[int] = []
    assert [e["type"] for e in read_events(p, skipped)] == ["a", "b"] and skipped == [3]
