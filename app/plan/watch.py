"""Following a plan from the cockpit or the headless mode: its queue, gates and decisions.

Reads the plan file only (the scheduler is its one writer). Pure Python: no torch, no Textual.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from app.plan.gate import fmt
from app.plan.model import Plan, load_plan
from app.runlib.safeio import clean

STATE_MARK = {"queued": "○", "started": "●", "ended": "✓", "skipped": "⊘", "cancelled": "⊘"}


class PlanWatch:
    def __init__(self, path: str | os.PathLike, proc: subprocess.Popen | None = None):
        self.path = Path(path)
        self.proc = proc  # the scheduler, when this process started it (reaped here)
        self.plan: Plan | None = None
        self.error = ""
        self._mtime: int | None = None
        self._said: set = set()
        self._runs: dict = {}  # run_dir -> app.runlib.Run of started items (their state, read live)

    def refresh(self) -> bool:
        """Re-read the plan file if it changed; True when it did."""
        if self.proc is not None:
            self.proc.poll()
        try:
            m = self.path.stat().st_mtime_ns
        except OSError as e:
            self.error = f"{self.path}: {e.strerror or e}"
            return False
        if m == self._mtime and self.plan is not None:
            return False
        try:
            self.plan = load_plan(self.path)
        except ValueError as e:  # a torn read cannot happen (atomic rename); a broken file can
            self.error = str(e)
            return False
        self._mtime, self.error = m, ""
        return True

    def scheduler_alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self.path.with_suffix(".slurm").exists():
            return True  # run by SLURM jobs (app/launchers/slurm_plan.py): no scheduler process to find
        pid = self.plan.scheduler_pid if self.plan else None
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"app.plan.scheduler" in f.read(8192)
        except FileNotFoundError:
            return False
        except OSError:
            return True

    def abandoned(self) -> bool:
        """The plan is not finished but its scheduler is gone: queued runs will never start."""
        return self.plan is not None and not self.plan.finished and not self.scheduler_alive()

    def settle(self, timeout: float) -> list[str]:
        """Wait (up to ``timeout`` s) for the scheduler this process started to exit; the new lines."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.refresh()
        return self.new_lines()

    # --- text ---------------------------------------------------------------------------------
    def new_lines(self) -> list[str]:
        """Lines for the headless log, each said once: starts (with the gate that allowed them),
        skips (with why), the plan's end, an abandoned plan."""
        p = self.plan
        out: list[str] = []
        if p is None:
            return [f"plan: {self.error}"] if self.error and self._once(("error", self.error)) else []
        for it in p.items:
            d = it.decision or {}
            if it.state in ("started", "ended") and self._once((it.name, "started")):
                gate = f" (gate: {d.get('why')})" if d.get("action") == "start" else ""
                out.append(f"plan {p.name}: started {it.name}{gate}")
            elif it.state in ("skipped", "cancelled") and self._once((it.name, "skipped")):
                out.append(f"plan {p.name}: {it.name} {it.state}: {d.get('why', '')}")
        if p.finished and self._once(("end", p.status)):
            out.append(f"plan {p.name} {p.status}: " + ", ".join(f"{it.name} {self.item_state(it)}" for it in p.items)
                       + (f" ({p.note})" if p.status == "failed" and p.note else ""))
        if not p.finished and p.status != "created" and self.abandoned() and self._once(("abandoned",)):
            q = [it.name for it in p.items if it.state == "queued"]
            out.append(f"plan {p.name}: interrupted: its scheduler (pid {p.scheduler_pid}) is gone; "
                       f"queued runs will not start: {', '.join(q) or 'none'}"
                       + (f"; continue it with: segwatch plan {p.name} --continue" if q else ""))
        return [clean(x) for x in out]  # names, whys, notes come from files: no raw escapes

    def _once(self, key: tuple) -> bool:
        if key in self._said:
            return False
        self._said.add(key)
        return True

    def status(self) -> str:
        """The plan's status as people should read it: 'interrupted (...)' when its scheduler died."""
        p = self.plan
        if p is None:
            return "unreadable"
        if not p.finished and p.status != "created" and self.abandoned():
            return f"interrupted (its scheduler, pid {p.scheduler_pid}, is gone)"
        return p.status

    def item_state(self, it) -> str:
        """An item's state; a started run's from its own record (its scheduler may be gone)."""
        if it.state == "ended" and it.result:
            r = it.result
            return f"{r.get('status')} (best val F {fmt(r.get('best_val_f'))} @{r.get('best_epoch')})"
        if it.state == "started":
            from app.runlib import Run

            run = self._runs.get(it.run_dir)
            if run is None:
                run = self._runs[it.run_dir] = Run(it.run_dir)
            run.refresh()  # incremental: cheap when nothing changed
            st = run.state
            if st.best_val_f is not None:
                return f"{st.status} (best val F {fmt(st.best_val_f)} @{st.best_epoch})"
            return st.status
        if it.state == "queued" and self.plan is not None and self.abandoned() and not self.plan.finished:
            return "queued (will not start until: segwatch plan " + self.plan.name + " --continue)"
        return it.state

    def markup(self) -> str:
        """The queue for the cockpit (Rich markup): each run, the gates between them, outcomes."""
        p = self.plan
        if p is None:
            return f"[red]plan: {self.error or 'not readable yet'}[/]"
        status = p.status
        if self.abandoned() and not p.finished:
            status = f"[red]interrupted: scheduler gone, queued runs will not start (segwatch plan {p.name} --continue)[/]"
        head = f"[b]{'Plan B (serial)' if p.kind == 'serial' else 'Sweep'}[/b] {p.name} · {status}"
        if p.kind == "sweep":
            head += f" · at most {p.max_parallel} at once"
        parts = []
        for i, it in enumerate(p.items):
            d = it.decision or {}
            if it.after is not None or d.get("after"):
                if d.get("action") == "start":
                    parts.append(f"[green]gate held[/] [dim]({d.get('why')})[/]")
                elif d.get("action") == "skip":
                    parts.append(f"[yellow]gate: {it.state}[/] [dim]({d.get('why')})[/]")
                elif it.gate:
                    parts.append(f"[dim]gate[/] {it.gate}")
            colour = {"ended": "blue", "started": "green", "skipped": "yellow", "cancelled": "yellow"}.get(it.state, "dim")
            parts.append(f"[{colour}]{STATE_MARK.get(it.state, '?')} {i + 1} {it.name} {self.item_state(it)}[/]")
        sep = " → " if p.kind == "serial" else "  "
        return clean(head + "\n" + sep.join(parts), newlines=True)  # no raw escapes from the plan file
