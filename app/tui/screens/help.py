"""`?`: every key of the cockpit with what it does (the same list the footer and palette use)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "Keys act on the selected run (tab or 1-9 selects). A one-key adjustment shows what it sends "
    "(old → new), stays pending until the trainer answers, then shows applied (at which step) or "
    "refused (why). Every key is also in the command palette (ctrl+p), which also sets any live "
    "value: type `set lr 2e-4`."
)


def key_label(key: str) -> str:
    names = {"question_mark": "?", "enter": "enter", "tab": "tab", "shift+tab": "shift+tab"}
    return ", ".join(names.get(k, k) for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close", id="help.close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__(id="help-screen")
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("does")
        table.add_column("id", style="dim")
        for b in self.bindings:
            table.add_row(key_label(b.key), b.description, b.id or "")
        with VerticalScroll(classes="dialog help-box"):
            yield Static(Text("segwatch keys", style="bold"), classes="dialog-title")
            yield Static(INTRO, classes="dialog-text")
            yield Static(table, id="help-table")
            yield Static(Text("escape / ? closes", style="dim"))

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
