"""The plan's scheduler: ``python -m app.plan.scheduler PLAN_FILE``.

Started by ``segwatch run --serial/--sweep`` in its own process session, so a closed terminal or
a quit cockpit never stops a plan (the trainers already outlive the monitor; the queue must
too). It starts the queued runs in order, at most ``max_parallel`` at once, each under
``app.supervise`` like any ``segwatch run``; it waits for a supervisor to exit (``os.wait``: no
polling), reads the run's result from its record, evaluates the next run's gate against it and
records the decision. SIGTERM / SIGINT cancel what has not started yet (running trainers go
on). Pure Python, never imports torch.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from app import launch
from app.placement import used_ids
from app.plan.gate import Gate, fmt
from app.plan.model import Plan, load_plan, read_result
from app.runlib import ENDED, Run

ADOPTED_POLL_S = 1.0  # how often runs started by an earlier scheduler are looked at


class Cancelled(Exception):
    pass


class Scheduler:
    def __init__(self, plan: Plan, python: str | None = None):
        self.plan = plan
        self.python = python
        self.running: dict[int, int] = {}  # supervisor pid -> item index
        self.adopted: set[int] = set()  # items started by an earlier scheduler of this plan (--continue)
        self.gpus = launch.visible_gpus() if plan.device != "cpu" else []
        self.cancel_reason = ""
        self.cancelled = False
        self.waiting = False  # blocked in os.wait(): a cancel signal interrupts it

    def say(self, msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} plan {self.plan.name}: {msg}", flush=True)
        self.plan.note = msg

    # --- decisions ------------------------------------------------------------------------
    def _decide(self, i: int) -> bool | None:
        """For a queued item: True start it, False it was skipped, None wait (its predecessor runs)."""
        it = self.plan.items[i]
        if it.after is None or (it.decision and it.decision.get("action") == "start"):
            return True  # nothing to decide, or decided already and waiting for a free slot
        prev = self.plan.items[it.after]
        if prev.state in ("queued", "started"):
            return None
        base = {"t": time.time(), "after": prev.name, "gate": it.gate}
        if prev.state != "ended":
            it.decision = {**base, "holds": False, "action": "skip", "values": {},
                           "why": f"{prev.name} did not run ({prev.state})"}
            it.state = "skipped"
            self.say(f"{it.name} skipped: {it.decision['why']}")
            return False
        gate = Gate(it.gate or "", where=f"gate of {it.name}")
        res = gate.evaluate(prev.result or {})
        action = "start" if res.holds else "skip"
        it.decision = {**base, "holds": res.holds, "action": action, "values": res.values,
                       "why": f"after {prev.name} ({(prev.result or {}).get('status')}): {res.why}"}
        if res.holds:
            self.say(f"gate of {it.name} holds ({res.why}): starting it")
            return True
        it.state = "skipped"
        self.say(f"{it.name} skipped: gate {it.gate!r} does not hold ({res.why})")
        return False

    def _place(self, nproc: int) -> tuple[bool, str | None]:
        """(start now?, CUDA_VISIBLE_DEVICES for it). A running item holds the GPUs it was given,
        and one that was given none holds every GPU it inherited (its first ``nproc``); an item
        waits while too few are free, unless --max-parallel asked for more runs than GPUs (then it
        shares, and says so)."""
        if self.plan.share_gpu or not self.gpus:
            return True, None
        users: dict[str, int] = {g: 0 for g in self.gpus}
        for idx in self.running.values():
            held = self.plan.items[idx]
            for g in used_ids(held.gpus, held.nproc, self.gpus):
                users[g] = users.get(g, 0) + 1
        n = max(1, min(nproc, len(self.gpus)))
        free = [g for g in self.gpus if not users.get(g)]
        if len(free) >= n:
            return True, ",".join(free[:n])
        if self.plan.max_parallel > len(self.gpus) and nproc < len(self.gpus):
            least = sorted(self.gpus, key=lambda g: (users.get(g, 0), self.gpus.index(g)))[:n]
            self.say(f"GPU {','.join(least)} SHARED: --max-parallel {self.plan.max_parallel} with "
                     f"{len(self.gpus)} GPUs visible")
            return True, ",".join(least)
        return False, None  # wait until a running item ends and frees its GPUs

    def _start(self, i: int, gpus: str | None = None) -> None:
        it = self.plan.items[i]
        it.gpus = gpus
        spec = launch.LaunchSpec(Path(it.config), Path(it.run_dir), it.name, list(it.trainer_args), it.gpus, it.nproc)
        launch.start(spec, python=self.python)
        it.state, it.started_t, it.supervisor_pid = "started", time.time(), spec.pid
        self.running[spec.pid] = i
        self.say(f"started {it.name} (supervisor pid {spec.pid})" + (f" on GPU {it.gpus}" if it.gpus else ""))

    # --- the loop ---------------------------------------------------------------------------
    def step(self) -> None:
        """Decide and start what can start now (plan order, at most max_parallel running)."""
        for i, it in enumerate(self.plan.items):
            if it.state != "queued":
                continue
            ok = self._decide(i)
            if ok is None:
                continue
            if ok is False:
                self.plan.save()
                continue
            if len(self.running) + len(self.adopted) >= max(1, self.plan.max_parallel):
                break
            if self.cancelled:
                raise Cancelled()
            ok, gpus = self._place(it.nproc)
            if not ok:
                break  # in plan order: nothing overtakes the item waiting for a GPU
            self._start(i, gpus)
            self.plan.save()

    def run(self) -> int:
        p = self.plan
        continued = p.status in ("running", "created") and p.scheduler_pid not in (None, os.getpid())
        self.adopted = {i for i, it in enumerate(p.items) if it.state == "started"}
        p.status, p.scheduler_pid = "running", os.getpid()
        p.save()
        if continued:
            self.say(f"continued after its scheduler stopped: {len(self.adopted)} run(s) started before, "
                     f"{sum(it.state == 'queued' for it in p.items)} queued")
        else:
            self.say(f"{len(p.items)} runs, at most {p.max_parallel} at once")
        try:
            while True:
                if self.cancelled:
                    raise Cancelled()
                self._check_adopted()
                self.step()
                if not self.running and not self.adopted:
                    break
                if self.adopted:  # not our children: no os.wait for them; look at their records
                    pid = self._poll_child(ADOPTED_POLL_S)
                    if pid is None:
                        continue
                else:
                    pid, _ = self._wait_child()
                i = self.running.pop(pid, None)
                if i is None:
                    continue
                self._ended(i)
            p.status = "done"
            self.say("done: " + ", ".join(f"{it.name} {it.state}" for it in p.items))
        except Cancelled:
            p.status = "cancelled"
            for it in p.items:
                if it.state == "queued":
                    it.state = "cancelled"
                    it.decision = {"t": time.time(), "action": "skip", "holds": None, "gate": it.gate,
                                   "after": p.items[it.after].name if it.after is not None else None, "values": {},
                                   "why": f"the plan was cancelled ({self.cancel_reason})"}
            self.say(f"cancelled ({self.cancel_reason}); runs already started go on: "
                     + (", ".join(p.items[i].name for i in self.running.values()) or "none"))
        except Exception as e:  # noqa: BLE001 - record it: the cockpit shows plan.note
            p.status = "failed"
            for it in p.items:
                if it.state == "queued":
                    it.state = "cancelled"
                    it.decision = {"t": time.time(), "action": "skip", "holds": None, "gate": it.gate, "values": {},
                                   "after": None, "why": f"the plan's scheduler failed: {type(e).__name__}: {e}"}
            self.say(f"failed: {type(e).__name__}: {e}")
            traceback.print_exc()
        finally:
            p.scheduler_pid = None
            p.save()
        return 0 if p.status == "done" else 1

    def _ended(self, i: int) -> None:
        it = self.plan.items[i]
        it.state, it.ended_t = "ended", time.time()
        it.result = read_result(it.run_dir)
        self.say(f"{it.name} ended: {it.result.get('status')}, best val F "
                 f"{fmt(it.result.get('best_val_f'))} at epoch {it.result.get('best_epoch')}")
        self.plan.save()

    def _check_adopted(self) -> None:
        """Runs an earlier scheduler started: ended once their record says so and the process is gone."""
        for i in sorted(self.adopted):
            run = Run(self.plan.items[i].run_dir)
            run.refresh()
            if run.state.status in ENDED and run.process_alive() is not True:
                self.adopted.discard(i)
                self._ended(i)

    def _poll_child(self, timeout: float) -> int | None:
        """A child (supervisor) that exited within ``timeout`` s, else None; cancel signals still work."""
        deadline = time.monotonic() + timeout
        while True:
            if self.cancelled:
                raise Cancelled()
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid:
                return pid
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(0.2, left))  # another process's run: nothing to block on but its files

    def _wait_child(self) -> tuple[int, int]:
        self.waiting = True
        try:
            if self.cancelled:
                raise Cancelled()
            return os.wait()  # a cancel signal raises Cancelled out of it (PEP 475 retries otherwise)
        finally:
            self.waiting = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m app.plan.scheduler PLAN_FILE", file=sys.stderr)
        return 2
    try:
        plan = load_plan(argv[0])
    except ValueError as e:
        print(f"segwatch plan: error: {e}", file=sys.stderr)
        return 2
    sched = Scheduler(plan)

    def cancel(signum, _frame):
        sched.cancel_reason = signal.Signals(signum).name
        sched.cancelled = True
        if sched.waiting:
            raise Cancelled()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, cancel)
    return sched.run()


if __name__ == "__main__":
    sys.exit(main())
