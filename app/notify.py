"""Never miss a red: what is worth a notification, and how it reaches a person.

``Notifier.observe`` turns successive looks at a run (status, health colour) into events: a run
that turns yellow or red, stalls, finishes (or stops early / is stopped), crashes; ``gate`` adds
a plan's gate decision. The first complete look at a run is its baseline and notifies nothing,
so attaching to a run replays its history silently. Each event is delivered once, rate-limited
(the same kind for the same run at most once per ``SAME_EVERY`` s; at most ``BURST`` events per
``WINDOW`` s in all, what was held back is counted in the next one).

Delivery (``Delivery``): a terminal bell, and a desktop notification through the terminal (OSC 9
and OSC 777, wrapped for tmux's passthrough inside tmux), written by whoever owns the terminal
(the Textual driver in the cockpit, stdout in the headless mode when it is a terminal); and
``--notify-cmd CMD``: CMD (split with shlex, run without a shell) gets the event as one JSON
object on stdin, from one background thread, one at a time. Pure Python: no Textual, no torch.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import subprocess
import threading
import time
from typing import Any, Callable

from app.snapshot import fmt_duration

SAME_EVERY = 300.0  # seconds between two events of the same kind for the same run
WINDOW, BURST = 60.0, 5  # at most BURST events per WINDOW seconds
CMD_TIMEOUT = 30.0  # seconds a --notify-cmd may take
ENDED = {"finished": "finished", "early_stop": "stopped early", "stopped": "stopped", "crashed": "crashed"}
RANK = {"green": 0, "yellow": 1, "red": 2}
MAX_TEXT = 240


def clean_text(text: str, limit: int = MAX_TEXT) -> str:
    """One line of printable text: control characters (C0, DEL, C1: ESC, BEL, ST...) become spaces."""
    out = "".join(" " if (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) else c for c in str(text))
    out = " ".join(out.split())
    return out if len(out) <= limit else out[:limit - 1] + "…"


class Notifier:
    """Events from successive looks at runs; ``observe`` is called by the thread that owns them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[Any, tuple[str, str]] = {}  # run key -> (status, colour) last looked at
        self._last: dict[tuple, float] = {}  # (run key, kind) -> when last delivered
        self._sent: list[float] = []
        self.held_back = 0
        self._lock = threading.Lock()  # the watcher thread and the plan bar's thread both report

    def has_baseline(self, key: Any) -> bool:
        return key in self._seen

    def observe(self, key: Any, *, name: str, status: str, colour: str, epoch: Any = None,
                detail: str = "", action: str = "", summary: str = "", run_dir: str = "",
                complete: bool = True) -> list[dict]:
        """Events for this look at run ``key``. ``complete``: the record has been read to its end
        (a look while catching up on a long record is not a baseline and says nothing)."""
        if not complete:
            return []
        before = self._seen.get(key)
        self._seen[key] = (status, colour)
        if before is None:
            return []  # the baseline: history replayed on attach is not news
        old_status, old_colour = before
        kinds = []
        if status != old_status:
            if status in ENDED:
                kinds.append(status if status == "crashed" else "finished")
            elif status == "stalled":
                kinds.append("stalled")
        if not kinds and status not in ENDED and status != "stalled" and RANK.get(colour, 0) > RANK.get(old_colour, 0):
            kinds.append(colour)
        out = []
        for kind in kinds:
            msg = _message(kind, name, status, colour, epoch, detail, action, summary)
            ev = self._event(kind, key, name=name, run_dir=run_dir, status=status, colour=colour, epoch=epoch,
                             message=msg)
            if ev is not None:
                out.append(ev)
        return out

    def gate(self, plan: str, line: str) -> dict | None:
        """A plan's gate decided (a run started after its gate, or was skipped)."""
        return self._event("gate", ("plan", plan, line), name=plan, run_dir="", status="", colour="", epoch=None,
                           message=clean_text(line))

    def _event(self, kind: str, key: Any, **fields: Any) -> dict | None:
        with self._lock:
            return self._event_locked(kind, key, **fields)

    def _event_locked(self, kind: str, key: Any, **fields: Any) -> dict | None:
        now = self.clock()
        last = self._last.get((key, kind))
        if kind not in ("finished", "crashed") and last is not None and now - last < SAME_EVERY:
            self.held_back += 1
            return None
        self._sent = [t for t in self._sent if now - t < WINDOW]
        if len(self._sent) >= BURST:
            self.held_back += 1
            return None
        self._sent.append(now)
        self._last[(key, kind)] = now
        ev = {"v": 1, "kind": kind, "run": clean_text(fields["name"]), "t": time.time(), **fields}
        ev["title"] = clean_text(f"segwatch: {fields['name']} {TITLE.get(kind, kind)}", 80)
        if self.held_back:
            ev["held_back"] = self.held_back
            ev["message"] += f" (+{self.held_back} more held back by the rate limit)"
            self.held_back = 0
        del ev["name"]
        return ev


TITLE = {"yellow": "YELLOW", "red": "RED", "stalled": "STALLED", "finished": "ended", "crashed": "CRASHED",
         "gate": "gate"}


def _message(kind: str, name: str, status: str, colour: str, epoch: Any, detail: str, action: str,
             summary: str) -> str:
    at = f" at epoch {epoch}" if isinstance(epoch, int) and epoch > 0 else ""
    if kind in ("yellow", "red"):
        text = f"{name} turned {kind.upper()}{at}" + (f": {summary}" if summary else "")
        return clean_text(text + (f"; suggested: {action}" if action else ""))
    if kind == "stalled":
        return clean_text(f"{name} {detail or 'stalled'}")
    return clean_text(f"{name} {detail or ENDED.get(status, status)}")


def gate_lines(lines: list[str]) -> list[str]:
    """The lines of app.plan.watch.PlanWatch.new_lines that say a gate decided (a start after a
    gate, a skip, a cancel)."""
    return [x for x in lines if "(gate: " in x or " skipped: " in x or " cancelled: " in x]


# --- delivery ---------------------------------------------------------------------------------


def terminal_sequence(ev: dict, *, tmux: bool | None = None, term: str | None = None) -> str:
    """Bell + OSC 9 + OSC 777 for ``ev``. Inside tmux the OSCs go through its passthrough (shown
    where tmux has ``allow-passthrough on``; tmux shows the bell itself). On the Linux console
    (no OSC notifications) only the bell."""
    tmux = bool(os.environ.get("TMUX")) if tmux is None else tmux
    term = os.environ.get("TERM", "") if term is None else term
    if term == "linux":
        return "\a"
    title = clean_text(ev.get("title", "segwatch"), 80).replace(";", ",")
    body = clean_text(ev.get("message", ""))
    oscs = [f"\x1b]9;{title}: {body}\x07", f"\x1b]777;notify;{title};{body}\x07"]
    if tmux:  # DCS tmux; <sequence with each ESC doubled> ST
        oscs = ["\x1bPtmux;" + s.replace("\x1b", "\x1b\x1b") + "\x1b\\" for s in oscs]
    return "\a" + "".join(oscs)


class NotifyCmdError(ValueError):
    pass


def parse_notify_cmd(cmd: str | None) -> list[str] | None:
    """``--notify-cmd`` as an argv (shlex, no shell); a clear error when it cannot run."""
    if cmd is None:
        return None
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        raise NotifyCmdError(f"--notify-cmd {cmd!r}: {e} (give a command line, quoted as in a shell)") from None
    if not argv:
        raise NotifyCmdError("--notify-cmd is empty: give a command, e.g. --notify-cmd 'ntfy publish mytopic'")
    if shutil.which(argv[0]) is None:
        raise NotifyCmdError(f"--notify-cmd: {argv[0]!r} is not an executable file or a command on PATH")
    return argv


class Delivery:
    """Sends events: ``terminal(seq)`` writes to the terminal (or None), ``argv`` the --notify-cmd.

    ``on_error(text)`` hears about a command that failed (from the command thread)."""

    def __init__(self, terminal: Callable[[str], None] | None = None, argv: list[str] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.terminal = terminal
        self.argv = argv
        self.on_error = on_error or (lambda _t: None)
        self.delivered: list[dict] = []
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def send(self, ev: dict) -> None:
        self.delivered.append(ev)
        if self.terminal is not None:
            self.terminal(terminal_sequence(ev))
        if self.argv:
            self._idle.clear()
            self._q.put(ev)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_cmds, name="notify-cmd", daemon=True)
                self._thread.start()

    def _run_cmds(self) -> None:
        while True:
            ev = self._q.get()
            if ev is None:
                return
            try:
                p = subprocess.run(self.argv, input=json.dumps(ev).encode(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=CMD_TIMEOUT, start_new_session=True)
                if p.returncode != 0:
                    err = clean_text(p.stderr.decode(errors="replace"), 160)
                    self.on_error(f"--notify-cmd exited {p.returncode} for a {ev['kind']} event"
                                  + (f": {err}" if err else ""))
            except subprocess.TimeoutExpired:
                self.on_error(f"--notify-cmd took over {CMD_TIMEOUT:.0f} s for a {ev['kind']} event; killed")
            except OSError as e:
                self.on_error(f"--notify-cmd could not run: {e}")
            if self._q.empty():
                self._idle.set()

    def close(self, timeout: float = 5.0) -> bool:
        """Wait (up to ``timeout`` s) for the commands still queued; True when all ran."""
        done = self._idle.wait(timeout)
        if self._thread is not None:
            self._q.put(None)
        return done


def end_detail(v: Any) -> str:
    """One line for a notification: how it ended, best val F, wall time; a crash's reason."""
    lines = end_summary(v)
    why = next((x for x in lines if x.startswith("why: ")), "")
    return lines[0] + (f"; {why[5:]}" if why else "")


def end_summary(v: Any) -> list[str]:
    """A run that ended, for its pane and the headless log: how it ended, best val F and epoch,
    wall time, what to run next. ``v``: a RunView (or anything with its fields)."""
    how = {"finished": "finished", "early_stop": "stopped early (patience)", "stopped": "stopped",
           "crashed": "CRASHED"}.get(v.status, v.status)
    total = f" of {v.total_epochs}" if v.total_epochs else ""
    best = (f"best val F {v.best_val_f:.3f} (epoch {v.best_epoch})"
            if isinstance(v.best_val_f, (int, float)) and v.best_val_f >= 0 and v.best_epoch else "no best val F yet")
    wall = getattr(v, "wall_s", None)
    first = f"{how} after {v.epoch}{total} epochs · {best}" + (f" · wall time {fmt_duration(wall)}" if wall else "")
    name = shlex.quote(v.name)
    nxt = [f"segwatch report {name}"]
    if v.best_epoch:
        nxt.append(f"segwatch predict {name} --images DIR --out DIR")
    if v.status in ("crashed", "stopped"):
        nxt.insert(0, f"segwatch resume {name}")
    lines = [first]
    if v.status == "crashed" and getattr(v, "crash_reason", ""):
        lines.append(f"why: {clean_text(v.crash_reason, 200)}")
    lines.append("next: " + "  ·  ".join(nxt))
    return lines
