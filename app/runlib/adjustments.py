"""The adjustment log of a run: each command of control.jsonl matched with the trainer's answer
(ack/nack in events.jsonl), in send order. An answer may be read before its command line: it is
recorded and completed when the command arrives; the first line with an id is the one answered."""

from __future__ import annotations

from .records import Adjustment, _int, _unix_time
from .safeio import clean, clean_value


class AdjustmentLog:
    def __init__(self) -> None:
        self.items: list[Adjustment] = []
        self.by_id: dict[str, Adjustment] = {}
        self._no_id_by_line: dict[int, Adjustment] = {}
        self.duplicates = 0  # command lines that repeat an id already read

    def answer(self, ev: dict) -> Adjustment | None:
        """Match an ack/nack; returns its adjustment when this is its first answer (else None)."""
        cid = ev.get("id")
        adj = None
        if isinstance(cid, str):
            adj = self.by_id.get(cid)
            if adj is None:  # the answer was read before its command line (or has none: resume --set)
                adj = Adjustment(id=cid, cmd=ev.get("cmd"),
                                 reason=ev["reason"] if isinstance(ev.get("reason"), str) else "",
                                 source=ev["source"] if isinstance(ev.get("source"), str) else "")
                self.by_id[cid] = adj
                self.items.append(adj)
        else:
            line = _int(ev.get("line"))
            adj = self._no_id_by_line.get(line) if line is not None else None
            if adj is None:
                adj = Adjustment(id=None, cmd=ev.get("cmd"), line=line)
                if line is not None:
                    self._no_id_by_line[line] = adj
                self.items.append(adj)
        if adj.answer is not None:
            return None  # the first answer stands
        adj.answer = ev
        adj.answer_t = ev.get("t")
        adj.answer_epoch = _int(ev.get("epoch"))
        adj.answer_step = _int(ev.get("step"))
        if adj.line is None and _int(ev.get("line")) is not None:
            adj.line = _int(ev["line"])
        if ev["type"] == "ack":
            adj.status = "applied"
            changes = ev.get("changes") if isinstance(ev.get("changes"), dict) else {}
            adj.changes = dict(changes)
        else:
            adj.status = "refused"
            adj.answer_reason = clean(ev.get("reason") or "")
        return adj

    def command(self, cmd: dict, line_no: int) -> None:
        """One control.jsonl object found at 1-based line ``line_no``."""
        if not isinstance(cmd, dict):
            return
        cid = cmd.get("id")
        values = cmd.get("values") if isinstance(cmd.get("values"), dict) else {}
        if isinstance(cid, str) and cid:
            adj = self.by_id.get(cid)
            if adj is not None and adj.line is not None:
                self.duplicates += 1  # the first line with an id is the one answered
                return
            placeholder = adj is not None
            if adj is None:
                adj = Adjustment(id=cid)
                self.by_id[cid] = adj
                self.items.append(adj)
        else:
            adj = self._no_id_by_line.get(line_no)
            if adj is None:
                adj = Adjustment(id=None)
                self._no_id_by_line[line_no] = adj
                self.items.append(adj)
        adj.cmd = clean(cmd["cmd"]) if isinstance(cmd.get("cmd"), str) else adj.cmd
        adj.values = clean_value(values)
        adj.reason = clean(cmd.get("reason") or "")
        adj.source = clean(cmd.get("source") or "")
        t = cmd.get("t")
        adj.sent_t = _unix_time(t)
        adj.line = line_no
        if isinstance(cid, str) and cid and placeholder:
            # answered before its line was read: move it to its place in send order
            self.items.sort(key=lambda a: a.line if a.line is not None else float("inf"))
