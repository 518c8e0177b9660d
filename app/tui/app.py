"""The cockpit: one pane per run, live, with one-key emergency adjustments.

Wiring only: the watcher thread (watcher.py) reads the records and posts ``RunsChanged``; this
app takes the newest snapshots and hands them to the panes. The keys live in actions.py, the
widgets in widgets/, the dialogs in screens/, the styles in app.tcss. Never imports torch.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from rich.markup import escape
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from app.launch import LaunchSpec
from app.notify import Delivery
from app.snapshot import RunView

from .actions import CockpitActions
from .commands import SegwatchCommands
from .watcher import Watcher
from .widgets.compare import CompareBar
from .widgets.log_pane import LogChanged, LogPane, LogReader
from .overlay_wiring import OverlayWiring
from .widgets.overlay import OverlayBar
from .widgets.plan_bar import PlanBar
from .widgets.run_pane import RunPane
from .widgets.run_table import RunTable, table_mode

# Run keys act on the selected run; they are app bindings so the footer, the help screen and
# the command palette list them, and a modal dialog (which cuts the binding chain) disables them.
BINDINGS = [
    Binding("l", "preset('lr_down')", "LR x0.6", id="lr_down"),
    Binding("L", "preset('lr_up')", "LR x1.6", id="lr_up"),
    Binding("g", "preset('gamma_down')", "γ -0.5", id="gamma_down"),
    Binding("G", "preset('gamma_up')", "γ +0.5", id="gamma_up"),
    Binding("u", "preset('unstable')", "Unstable", id="preset_unstable"),
    Binding("o", "preset('overfitting')", "Overfit", id="preset_overfitting"),
    Binding("f", "preset('underfitting')", "Underfit", id="preset_underfitting"),
    Binding("a", "apply_suggestion", "Apply suggested", id="apply_suggestion"),
    Binding("enter", "apply_suggestion", "Apply suggested", show=False, id="apply_suggestion_enter"),
    Binding("z", "undo", "Undo", id="undo"),
    Binding("p", "pause_resume", "Pause/resume", id="pause_resume"),
    Binding("s", "stop_run", "Stop run", id="stop_run"),
    Binding("c", "checkpoint", "Checkpoint", id="checkpoint"),
    Binding("m", "previews", "Masks", id="previews"),
    Binding("t", "trainer_log", "Log", id="trainer_log"),
    Binding("e", "overlay_ema", "Smoothing", id="overlay_ema"),
    Binding("x", "overlay_align", "x: epoch/step", id="overlay_align"),
    Binding("tab", "next_run", "Next run", priority=True, id="next_run"),
    Binding("shift+tab", "prev_run", "Previous run", show=False, priority=True, id="prev_run"),
    *[Binding(str(n), f"select({n - 1})", f"Select run {n}", show=False, id=f"select_{n}") for n in range(1, 10)],
    Binding("question_mark", "help", "Help", id="help"),
    Binding("q", "quit_dialog", "Quit", id="quit"),
]
RUN_ACTIONS = {b.action.split("(")[0] for b in BINDINGS}


class RunsChanged(Message):
    """The watcher has newer snapshots; take them with ``Watcher.take``."""


class Body(Container):
    """Holds the run table and the panes; a new terminal size may switch between the two modes."""

    def on_resize(self) -> None:
        apply = getattr(self.app, "_apply_mode", None)
        if apply is not None:
            apply()


class NotifyFailed(Message):
    """A --notify-cmd failed (posted from the command thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


ALERT_SEVERITY = {"red": "error", "crashed": "error", "stalled": "error", "yellow": "warning"}


class SegwatchApp(OverlayWiring, CockpitActions, App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "segwatch"
    BINDINGS = BINDINGS
    COMMANDS = App.COMMANDS | {SegwatchCommands}
    ENABLE_COMMAND_PALETTE = True

    selected: reactive[int] = reactive(0)

    def __init__(self, runs: Sequence[Any], rules: Sequence[Any], *, specs: Sequence[LaunchSpec] = (),
                 interval: float = 0.25, gpu: bool = True, runs_dir: str = "runs",
                 thresholds: Sequence[dict | None] | None = None, plan: Any = None,
                 notify_argv: list[str] | None = None, notes: Sequence[str] = (),
                 pane_notes: Sequence[str | None] = (), refs: Sequence[RunView] = ()) -> None:
        super().__init__()
        self.refs = list(refs)  # reference runs (app.refs): read once, drawn in the overlay only
        self.notes = list(notes)  # shown as toasts on mount (a run renamed because its name was taken)
        self.pane_notes = list(pane_notes) + [None] * (len(runs) - len(pane_notes))  # in each pane's header
        # bell + OSC 9/777 through the driver; --notify-cmd in a thread (app.notify)
        self.delivery = Delivery(self._write_terminal, notify_argv, lambda t: self.post_message(NotifyFailed(t)))
        self.plan_bar = PlanBar(plan, id="planbar") if plan is not None else None  # app.plan.watch.PlanWatch
        self.watcher = Watcher(runs, rules, interval=interval, gpu=gpu, specs=specs)
        self.rules = list(rules)
        self.views: dict[int, RunView] = {}
        self.awaiting_answer: dict[int, dict[str, str]] = {}
        self.runs_dir = runs_dir
        self.thresholds = list(thresholds or [None] * len(runs))
        self.updates = 0  # RunsChanged handled (tests and measurements read it)
        # kept by reference: App.query_one searches the active screen, which may be a dialog
        self.panes: dict[int, RunPane] = {}
        self.topbar = Static(id="topbar")
        self._topbar_text = ""
        self.compare = CompareBar(id="compare")
        self.overlay = OverlayBar(id="overlay")
        self.overlay.display = False  # _apply_mode shows it when two curves or more fit
        self.run_table = RunTable(id="runtable")
        self.body = Body(id="body")
        self.table_mode = False  # more runs than fit: a row per run, the selected run's pane beside
        self.worker_errors: list[str] = []  # a cockpit worker that failed (shown in the header)
        self._compare_due = False  # newer views than the compare bar shows (it follows once a second)
        self.clock_ticks = 0  # _clock calls so far (a pane records the one it was drawn in)
        self._compare_t = -1e9  # when the compare bar last took views
        self.log_pane = LogPane(id="trainerlog")  # `t`: the selected run's stdout/stderr (hidden until then)
        self.log_reader = LogReader()
        self._log_started = False

    # --- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        n = len(self.watcher.runs)
        yield self.topbar
        if self.plan_bar is not None:
            yield self.plan_bar
        layout = "-n1" if n == 1 else "-n2" if n == 2 else "-grid"
        with self.body:
            yield self.run_table
            with Container(id="panes", classes=layout):
                for i, run in enumerate(self.watcher.runs):
                    self.panes[i] = RunPane(i, getattr(run, "name", str(i)), thresholds=self.thresholds[i],
                                            note=self.pane_notes[i])
                    yield self.panes[i]
        if n >= 2:
            yield self.compare
        yield self.log_pane
        yield self.overlay
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._watch, thread=True, name="watcher", group="watcher", exclusive=True, exit_on_error=False)
        self.set_interval(1.0, self._clock)
        self._apply_mode()
        self._show_selection()
        for n in self.notes:
            self.notify(n, title="segwatch run", severity="warning", timeout=30)

    def _apply_mode(self) -> None:
        """Full panes when they fit; else the run table with the selected run's pane (beside it
        from 150 columns, below it on narrower terminals)."""
        n = len(self.watcher.runs)
        rows = self._fit_overlay()
        mode = table_mode(n, self.size.width, self.size.height - rows)
        self.table_mode = mode
        self.body.set_class(mode, "-table")
        self.body.set_class(mode and self.size.width >= 150, "-wide")
        self.run_table.beside = mode and self.size.width >= 150
        self.run_table._last = None
        if n >= 2:
            self.compare.display = not mode
        for pane in self.panes.values():
            pane.set_hidden(mode and pane.index != self.selected)
        if not mode:
            for pane in self.panes.values():
                pane.flush()  # every pane shown again: draw what the hidden ones kept
        self._update_table()

    def _update_table(self) -> None:
        if self.table_mode:
            self.run_table.show(self.views, [getattr(r, "name", str(i)) for i, r in enumerate(self.watcher.runs)],
                                self.selected)

    def _watch(self) -> None:
        worker = get_current_worker()
        self.watcher.loop(lambda: worker.is_cancelled, lambda: self.post_message(RunsChanged()))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event.worker, event.state)

    def worker_state_changed(self, worker: Worker, state: WorkerState) -> None:
        """The one error handler of the cockpit's workers (the watcher; the plan bar forwards its own):
        they run with exit_on_error=False, so a failure is shown in the header and as a toast, and
        the cockpit stays up instead of ending with a traceback."""
        if state != WorkerState.ERROR:
            return
        err = worker.error
        self.worker_errors.append(f"{worker.name or 'worker'} stopped: {type(err).__name__}: {err}")
        self.notify(self.worker_errors[-1], title="segwatch", severity="error", timeout=30)
        self._update_topbar()

    # --- updates from the watcher ----------------------------------------------------------
    def on_runs_changed(self, _: RunsChanged) -> None:
        views = self.watcher.take()
        if not views:
            return
        self.updates += 1
        first = any(i not in self.views for i in views)  # a run's first view: the compare bar takes it at once
        for i, v in views.items():
            self.views[i] = v
            self.say_answers(i)
            try:
                self.panes[i].set_view(v, hidden=self.table_mode and i != self.selected)
            except NoMatches:  # shutting down: the pane's children are gone
                return
        if first or time.monotonic() - self._compare_t >= 1.0:
            self._update_compare()  # a run's first view, or quiet for a second: at once
        else:
            self._compare_due = True  # drawn with the clock's tick, in the panes' screen update
        self._update_overlay()
        self._update_topbar()
        self._update_table()
        for ev in self.watcher.take_alerts():
            self.alert(ev)

    def alert(self, ev: dict) -> None:
        """A notification event (app.notify): bell, desktop notification, --notify-cmd, a toast."""
        self.delivery.send(ev)
        self.notify(ev["message"], title=ev["title"], severity=ALERT_SEVERITY.get(ev["kind"], "information"),
                    timeout=15)

    def _write_terminal(self, seq: str) -> None:
        # as App.bell does: the driver's writer owns the terminal; nothing in headless (Pilot) mode
        if self._driver is not None and not self.is_headless:
            self._driver.write(seq)

    def on_notify_failed(self, msg: NotifyFailed) -> None:
        self.notify(msg.text, severity="error", timeout=10)

    def on_plan_bar_gate_decided(self, msg: Any) -> None:
        ev = self.watcher.notifier.gate(msg.plan, msg.line)
        if ev is not None:
            self.alert(ev)

    def _update_compare(self) -> None:
        self._compare_due = False
        self._compare_t = time.monotonic()
        if len(self.watcher.runs) < 2:
            return
        other = 1 if self.selected == 0 else 0
        a, b = (self.views.get(other), self.views.get(self.selected)) if self.selected else (self.views.get(0), self.views.get(1))
        self.compare.set_views(a, b)

    def _update_topbar(self) -> None:
        v = self.views.get(self.selected)
        n = len(self.watcher.runs)
        colours = " ".join(f"[{x.colour}]●[/]" for _, x in sorted(self.views.items()))
        sel = f"selected [b]{self.selected + 1} {v.name}[/b]" if v else f"selected {self.selected + 1}"
        last_error = (self.worker_errors or self.watcher.errors or [""])[-1]
        errs = f"  [red]{escape(last_error)}[/]" if last_error else ""
        text = (f"[b]segwatch[/b]  {n} run{'s' if n != 1 else ''} {colours}  {sel}   "
                f"[dim]tab/1-9 select · ? help · ctrl+p palette · q quit[/]{errs}")
        if text != self._topbar_text:
            self._topbar_text = text
            self.topbar.update(text)

    def _clock(self) -> None:
        """Once a second: the panes draw the views that waited (fast epochs, coalesced) and move
        their ETAs on, the compare bar follows, the run table's ETAs move on: one screen update
        for all of them (bench/tui_fast_epochs.py)."""
        self.clock_ticks += 1
        for pane in self.panes.values():
            pane.tick()
        if self._compare_due:
            self._update_compare()
        self.overlay.f_plot.tick()  # the overlay's trailing redraws, in the same screen update
        self.overlay.loss_plot.tick()
        self._update_table()  # its ETAs move on

    def watch_selected(self, _old: int, _new: int) -> None:
        if self.is_mounted:
            self._show_selection()

    def _show_selection(self) -> None:
        for pane in self.panes.values():
            pane.set_class(pane.index == self.selected, "-selected")
            pane.set_hidden(self.table_mode and pane.index != self.selected)
            if pane.index == self.selected or not self.table_mode:
                pane.flush()  # a pane hidden behind the run table draws the view it kept
        if len(self.watcher.runs) > 2 and self.selected in self.panes and not self.table_mode:
            self.panes[self.selected].scroll_visible()
        self._update_compare()
        self._update_topbar()
        self._update_table()
        self._follow_log()

    # --- the trainer log (`t`) -------------------------------------------------------------
    def toggle_log(self) -> None:
        """Open or close the log pane; the reader thread starts the first time it opens."""
        self.log_pane.display = not self.log_pane.display
        self._apply_mode()  # the overlay steps aside while the log is open
        if not self._log_started:
            self._log_started = True
            self.run_worker(self._read_logs, thread=True, name="trainer log", group="trainer-log",
                            exclusive=True, exit_on_error=False)
        self._follow_log()

    def _follow_log(self) -> None:
        if not self.log_pane.display:
            self.log_reader.hide()
            return
        run = self.watcher.runs[self.selected] if self.selected < len(self.watcher.runs) else None
        path = getattr(run, "path", None)
        self.log_pane.set_run(self.selected, getattr(run, "name", str(self.selected)))
        if path is not None:
            self.log_reader.show(self.selected, path)

    def _read_logs(self) -> None:
        worker = get_current_worker()
        self.log_reader.loop(lambda: worker.is_cancelled, self.post_message)

    def on_log_changed(self, msg: LogChanged) -> None:
        self.log_pane.set_lines(msg)

    # --- key availability ------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in RUN_ACTIONS and isinstance(self.screen, ModalScreen):
            return False  # let tab and the rest reach the dialog
        if action == "select" and parameters and int(parameters[0]) >= len(self.watcher.runs):
            return False
        return True

    def palette_set(self, key: str, value: Any) -> None:
        """`set KEY VALUE` from the command palette, on the selected run."""
        self.send_set({key: value}, f"palette: set {key}")
