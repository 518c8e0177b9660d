"""JsonlTail: incremental, robust reading of append-only JSONL files."""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from app.runlib.tail import JsonlTail


def append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def line(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def test_missing_then_empty_then_lines(tmp_path):
    p = tmp_path / "events.jsonl"
    t = JsonlTail(p)
    assert t.read_new() == []  # missing: empty, no exception
    p.write_bytes(b"")
    assert t.read_new() == []
    append(p, line({"a": 1}) + line({"a": 2}))
    assert t.read_new() == [{"a": 1}, {"a": 2}]
    assert t.read_new() == []
    assert (t.bad_lines, t.resets, t.line_no) == (0, 0, 2)


def test_partial_lines_appended_in_pieces(tmp_path):
    p = tmp_path / "e.jsonl"
    t = JsonlTail(p)
    data = line({"type": "step", "step": 1, "loss": 0.5}) + line({"type": "step", "step": 2})
    got = []
    for i in range(0, len(data), 7):  # byte by byte would work too; 7 splits inside tokens
        append(p, data[i:i + 7])
        got += t.read_new()
        if i + 7 < len(data) - 1:
            assert t.partial_bytes or got  # something is held or already complete
    assert got == [{"type": "step", "step": 1, "loss": 0.5}, {"type": "step", "step": 2}]
    assert t.bad_lines == 0 and t.partial_bytes == 0


def test_garbage_and_binary_are_skipped_and_counted(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(
        line({"ok": 1})
        + b"{not json\n"
        + b"\x00\xff\xfe\x80garbage\xc3\n"
        + b"[1, 2, 3]\n"  # valid JSON, not an object
        + b'"text"\n'
        + b"\n   \n"  # blank lines: silently skipped
        + b'{"s": "caf\xe9"}\n'  # invalid UTF-8 inside a valid object: kept with a replacement char
        + b"[" * 100_000 + b"\n"  # deep nesting: RecursionError inside json, must not raise
        + line({"ok": 2})
    )
    t = JsonlTail(p)
    got = t.read_new()
    assert got[0] == {"ok": 1} and got[-1] == {"ok": 2}
    assert got[1] == {"s": "caf\ufffd"}
    assert len(got) == 3
    assert t.bad_lines == 5
    assert "line 9" in t.last_error and "RecursionError" in t.last_error
    assert t.line_no == 10


def test_two_mib_line_is_skipped_without_holding_it(tmp_path):
    p = tmp_path / "e.jsonl"
    t = JsonlTail(p, chunk=256 * 1024)
    append(p, line({"before": 1}))
    assert t.read_new() == [{"before": 1}]
    big = b'{"x": "' + b"a" * (2 << 20) + b'"}\n'
    # appended in pieces: the partial line must not grow past the cap
    for i in range(0, len(big), 300_000):
        append(p, big[i:i + 300_000])
        assert t.read_new() == []
        assert t.partial_bytes <= t.max_line
    append(p, line({"after": 2}))
    assert t.read_new() == [{"after": 2}]
    assert t.bad_lines == 1 and "longer than" in t.last_error
    # the same line written at once, read in one call
    t2 = JsonlTail(p, chunk=256 * 1024)
    assert t2.read_new() == [{"before": 1}, {"after": 2}]
    assert t2.bad_lines == 1


def test_max_bytes_bounds_a_read(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"".join(line({"i": i}) for i in range(100)))
    t = JsonlTail(p)
    first = t.read_new(max_bytes=100)
    assert t.more and len(first) < 100
    rest = []
    while True:
        got = t.read_new(max_bytes=100)
        rest += got
        if not t.more:
            break
    assert [o["i"] for o in first + rest] == list(range(100))


def test_truncate_and_rewrite_restarts(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(line({"old": 1}) + line({"old": 2}) + line({"old": 3}))
    t = JsonlTail(p)
    assert len(t.read_new()) == 3
    with open(p, "wb") as f:  # truncate + rewrite, shorter
        f.write(line({"new": 1}))
    assert t.read_new() == [{"new": 1}]
    assert t.was_reset and t.resets == 1
    assert t.read_new() == [] and not t.was_reset
    # rewritten in place to a LONGER content: noticed by the changed head
    with open(p, "r+b") as f:
        f.write(line({"new2": 1}) + line({"new2": 2}) + line({"new2": 3}))
    assert t.read_new() == [{"new2": 1}, {"new2": 2}, {"new2": 3}]
    assert t.resets == 2


def test_replace_via_rename_restarts(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(line({"gen": 1, "i": 0}) + line({"gen": 1, "i": 1}))
    t = JsonlTail(p)
    assert len(t.read_new()) == 2
    tmp = tmp_path / "e.jsonl.tmp"
    tmp.write_bytes(line({"gen": 2, "i": 0}) + line({"gen": 2, "i": 1}) + line({"gen": 2, "i": 2}))
    os.replace(tmp, p)
    got = t.read_new()
    assert [o["gen"] for o in got] == [2, 2, 2]
    assert t.was_reset and t.resets == 1 and t.line_no == 3


def test_file_removed_is_empty_then_new_file_is_read_from_start(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(line({"a": 1}))
    t = JsonlTail(p)
    assert t.read_new() == [{"a": 1}]
    p.unlink()
    assert t.read_new() == []
    p.write_bytes(line({"b": 1}) + line({"b": 2}))
    assert t.read_new() == [{"b": 1}, {"b": 2}]


def test_line_numbers_match_the_file(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(line({"n": 1}) + b"\n" + b"junk\n" + line({"n": 4}))
    assert JsonlTail(p).read_new_numbered() == [(1, {"n": 1}), (4, {"n": 4})]


@settings(max_examples=40, deadline=None)
@given(
    objs=st.lists(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=20)), max_size=3),
                  max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    max_line=st.sampled_from([8, 64, 1 << 20]),
)
def test_any_split_reads_the_same_objects(tmp_path_factory, objs, cuts, max_line):
    p = tmp_path_factory.mktemp("h") / "e.jsonl"
    data = b"".join(line(o) for o in objs)
    t = JsonlTail(p, max_line=max_line, chunk=16)
    p.write_bytes(b"")
    got, prev = [], 0
    for c in sorted(min(c, len(data)) for c in cuts) + [len(data)]:
        append(p, data[prev:c])
        prev = c
        got += t.read_new()
    fits = [o for o in objs if len(json.dumps(o)) <= max_line]
    assert got == fits
    assert t.bad_lines == len(objs) - len(fits) and t.line_no == len(objs)
