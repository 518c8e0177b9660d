"""Quitting asks: detach (the runs go on), stop the runs (gracefully), or cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitDialog(ModalScreen[str]):
    """Dismisses with "detach", "stop" or "cancel"."""

    BINDINGS = [
        Binding("d", "choose('detach')", "Detach", id="quit.detach"),
        Binding("s", "choose('stop')", "Stop runs", id="quit.stop"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="quit.cancel"),
        Binding("q", "choose('detach')", "Detach", show=False, id="quit.again"),
    ]

    def __init__(self, live_runs: int) -> None:
        super().__init__(id="quit-dialog")
        self.live_runs = live_runs

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box", classes="dialog"):
            n = self.live_runs
            if n:
                yield Label(f"Quit segwatch? {n} trainer{'s' if n != 1 else ''} still running.", classes="dialog-title")
                yield Label("Detach leaves them training (re-open with `segwatch attach`); "
                            "Stop asks them to stop after the current step (checkpoint kept).",
                            classes="dialog-text")
            else:
                yield Label("Quit segwatch? No trainer is running.", classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Detach (d)", id="detach", variant="primary")
                if n:
                    yield Button("Stop runs (s)", id="stop", variant="error")
                yield Button("Cancel (c)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        if choice == "stop" and not self.live_runs:
            return
        self.dismiss(choice)
