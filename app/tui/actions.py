"""What the keys do. A mixin of SegwatchApp, kept apart so app.py stays about wiring.

Every command goes through the watcher thread (``Watcher.submit``): the key handler only says
what it sends (old -> new) and returns; the adjustment log shows it pending until the trainer
answers. Nothing here blocks the screen.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from textual.message import Message

from app.health import resolve_preset
from app.snapshot import RunView, undo_target
from trainer.core.live import validate

from .screens.confirm import ConfirmDialog
from .screens.help import HelpScreen
from .screens.previews import PreviewScreen
from .screens.quit_dialog import QuitDialog
from .widgets.base import changes_text, undo_words
from .widgets.health_panel import _g, action_values

if TYPE_CHECKING:
    from .watcher import Watcher

PRESET_LABELS = {
    "lr_down": "LR x0.6", "lr_up": "LR x1.6", "gamma_down": "gamma -0.5", "gamma_up": "gamma +0.5",
    "unstable": "unstable preset", "overfitting": "overfitting preset", "underfitting": "underfitting preset",
}


class CommandDone(Message):
    """The watcher thread wrote (or refused to write) a command."""

    def __init__(self, index: int, what: str, error: str | None, cmd_id: str | None = None) -> None:
        super().__init__()
        self.index, self.what, self.error, self.cmd_id = index, what, error, cmd_id


class CockpitActions:
    """Mixed into SegwatchApp: needs ``watcher``, ``views``, ``rules``, ``selected``."""

    watcher: "Watcher"
    views: dict[int, RunView]
    awaiting_answer: dict[int, dict[str, str]]  # run index -> {command id: what was sent}, sent by this cockpit
    rules: list[Any]
    selected: int

    # --- helpers ------------------------------------------------------------------------
    def _view(self) -> RunView | None:
        return self.views.get(self.selected)

    def _live_view(self, what: str) -> RunView | None:
        v = self._view()
        if v is None:
            self.notify("No data from this run yet.", severity="warning")
            return None
        if v.over:
            self.notify(f"{v.name} is {v.status}: nothing to {what}.", severity="warning")
            return None
        return v

    def send(self, index: int, cmd: str, values: dict | None = None, reason: str = "") -> Future | None:
        v = self.views.get(index)
        name = v.name if v else f"run {index + 1}"
        what = f"set {changes_text({}, values, v.live if v else {})}" if cmd == "set" else cmd
        fut = self.watcher.submit(index, cmd, values, reason)
        if v is not None and v.status == "stalled":  # say so: it waits until the trainer moves again
            self.notify(f"{name}: {what} — sent, but the run is {v.status_detail}; it is answered when the "
                        "trainer makes progress again", title="adjustment", severity="error", timeout=10)
        else:
            self.notify(f"{name}: {what} — sent, pending", title="adjustment", timeout=4)

        def done(f: Future) -> None:  # runs on the watcher thread: post, never touch widgets
            err = None if f.exception() is None else str(f.exception())
            self.post_message(CommandDone(index, what, err, None if err else f.result()))

        fut.add_done_callback(done)
        return fut

    def on_command_done(self, msg: CommandDone) -> None:
        if msg.error:
            v = self.views.get(msg.index)
            self.notify(f"{v.name if v else msg.index + 1}: not sent: {msg.error}", severity="error", timeout=8)
        elif msg.cmd_id:
            self.awaiting_answer.setdefault(msg.index, {})[msg.cmd_id] = msg.what
            self.say_answers(msg.index)

    def say_answers(self, index: int) -> None:
        """A toast once the trainer answers a command this cockpit sent: the adjustment log that also
        says so may be below the fold (small terminals, the overlay), and the key's result must be seen."""
        waiting = self.awaiting_answer.get(index)
        v = self.views.get(index)
        if not waiting or v is None:
            return
        for a in v.adjustments:
            what = waiting.get(a.id)
            if what is None or a.status == "pending":
                continue
            del waiting[a.id]
            if a.status == "applied":
                self.notify(f"{v.name}: {what} — {a.when()}", title="adjustment", timeout=6)
            else:
                self.notify(f"{v.name}: {what} — refused: {a.answer_reason}", title="adjustment",
                            severity="error", timeout=10)

    def send_set(self, values: dict, reason: str) -> None:
        v = self._live_view("adjust")
        if v is None:
            return
        if not values:
            self.notify(f"{reason}: nothing would change.", severity="warning")
            return
        clean, problem = validate(values, v.live, min(v.epoch + 1, v.total_epochs or v.epoch + 1))
        if problem:
            self.notify(f"{v.name}: {reason}: not sent: {problem}", severity="error", timeout=8)
            return
        values = clean
        same = {k: x for k, x in values.items() if v.live.get(k) == x}
        if same and len(same) == len(values):
            self.notify(f"{reason}: already in force ({changes_text({}, values, v.live)}).", severity="warning")
            return
        self.send(v.index, "set", values, reason)

    # --- keys -----------------------------------------------------------------------------
    def action_select(self, n: int) -> None:
        if 0 <= n < len(self.watcher.runs):
            self.selected = n

    def action_next_run(self) -> None:
        self.selected = (self.selected + 1) % max(len(self.watcher.runs), 1)

    def action_prev_run(self) -> None:
        self.selected = (self.selected - 1) % max(len(self.watcher.runs), 1)

    def action_preset(self, name: str) -> None:
        v = self._live_view("adjust")
        if v is None:
            return
        try:
            values = resolve_preset(name, v.live, self.rules[v.index])
        except Exception as e:
            self.notify(f"preset {name}: {e}", severity="error")
            return
        self.send_set(values, f"preset: {name}")

    def action_apply_suggestion(self) -> None:
        v = self._live_view("adjust")
        if v is None:
            return
        if not v.actions:
            self.notify(f"{v.name}: the health rules suggest nothing now ({v.colour}).")
            return
        act = v.actions[0]
        values = action_values(act)
        preset = str(_g(act, "preset", "") or "")
        if preset == "stop":
            self.action_stop_run()
            return
        if not values:
            self.notify(f"{_g(act, 'text', preset)} — advice only, nothing to send.", severity="warning", timeout=8)
            return
        reason = f"suggested: {preset or _g(act, 'signal_id', '')}"
        if not act.settling:
            self.send_set(values, reason)
            return

        def answer(yes: bool | None) -> None:  # its evidence is from before the change: ask first
            if yes:
                self.send_set(values, reason)

        self.clear_notifications()  # a toast drawn over the dialog hid its buttons at 80x24
        self.push_screen(ConfirmDialog(
            f"Send {preset} to {v.name} again?",
            f"{act.settling_words()}: the signals still look at epochs from before it. "
            f"Again now: {changes_text({}, values, v.live)}.", yes="Send again"), answer)

    def action_undo(self) -> None:
        v = self._live_view("undo")
        if v is None:
            return
        target = undo_target(v.adjustments)
        if target is None:
            self.notify(f"{v.name}: no applied adjustment to undo.", severity="warning")
            return
        values = {k: pair[0] for k, pair in target.changes.items() if isinstance(pair, (list, tuple))}
        # "undo <id> (<what it undoes>)": the id keeps undo_target's bookkeeping, the words are for people
        self.send_set(values, f"undo {target.id} ({undo_words(target)})")

    def action_pause_resume(self) -> None:
        v = self._live_view("pause")
        if v is not None:
            self.send(v.index, "resume" if v.status == "paused" else "pause")

    def action_checkpoint(self) -> None:
        v = self._live_view("checkpoint")
        if v is not None:
            self.send(v.index, "checkpoint")

    def action_stop_run(self) -> None:
        v = self._live_view("stop")
        if v is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.send(v.index, "stop", reason="stopped from the cockpit")

        self.clear_notifications()  # a toast drawn over the dialog hid its buttons at 80x24
        self.push_screen(ConfirmDialog(f"Stop {v.name}?", "It stops after the current step; the checkpoints "
                                       "stay (resume later with `segwatch resume`).", yes="Stop"), answer)

    def action_previews(self) -> None:
        run = self.watcher.runs[self.selected] if self.selected < len(self.watcher.runs) else None
        path = getattr(run, "path", None)
        if path is None:
            self.notify("This run has no run directory yet.", severity="warning")
            return
        self.push_screen(PreviewScreen(path, getattr(run, "name", str(self.selected))))

    def action_trainer_log(self) -> None:
        self.toggle_log()  # app.py: the pane under the run panes, and its reader thread

    def action_help(self) -> None:
        self.push_screen(HelpScreen([b for b in self.BINDINGS]))

    def live_run_indexes(self) -> list[int]:
        return [i for i, v in self.views.items() if not v.over]

    def action_quit_dialog(self) -> None:
        if len(self.views) == len(self.watcher.runs) and not self.live_run_indexes():
            self.exit(0, message=self.detach_message())  # every run is known and over: nothing to ask
            return
        self.clear_notifications()  # a toast drawn over the dialog hid its buttons at 80x24
        self.push_screen(QuitDialog(len(self.live_run_indexes())), self._after_quit)

    async def _after_quit(self, choice: str | None) -> None:
        if choice == "detach":
            self.exit(0, message=self.detach_message())
        elif choice == "stop":
            futs = [self.send(i, "stop", reason="stopped when quitting the cockpit") for i in self.live_run_indexes()]
            waits = [asyncio.wrap_future(f) for f in futs if f is not None]
            if waits:
                await asyncio.wait(waits, timeout=5)
            self.exit(0, message="segwatch: asked the runs to stop (they finish the current step and exit).")

    def detach_message(self) -> str:
        live = [self.views[i] for i in self.live_run_indexes()]
        if not live:
            return "segwatch: no run is training."
        names = " ".join(v.name for v in live)
        return f"segwatch: detached; still training: {names}\n  re-attach: segwatch attach {names}"
