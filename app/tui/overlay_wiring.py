"""The overlay's part of the cockpit (a mixin of SegwatchApp): when it shows, what it draws, its
keys (`e`, `x`) and the palette's `ref RUN`. The widget is widgets/overlay.py; references app/refs.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.snapshot import RunView

from .widgets.overlay import curves_of, ema_words

if TYPE_CHECKING:
    from .widgets.overlay import OverlayBar

OVERLAY_MIN_H = 44  # terminal rows from which the overlay shows (below: the panes' health comes first)
OVERLAY_ROWS = 14  # at most (plus the legend line); height // 4 below that


def overlay_rows(height: int, curves: int, log_open: bool = False) -> int:
    """Plot rows of the overlay at this terminal height (0: hidden): it needs two curves to compare,
    and steps aside while the trainer log (`t`) takes the bottom of the screen."""
    if curves < 2 or height < OVERLAY_MIN_H or log_open:
        return 0
    return min(OVERLAY_ROWS, height // 4)


class OverlayWiring:
    """Needs ``overlay``, ``refs``, ``views``, ``watcher``, ``log_pane``, ``runs_dir`` (SegwatchApp)."""

    overlay: "OverlayBar"
    refs: list[RunView]
    views: dict[int, RunView]
    watcher: Any
    log_pane: Any
    runs_dir: str

    def _fit_overlay(self) -> int:
        """Show or hide the overlay for the terminal's size; the rows it takes (legend included)."""
        size = self.size  # type: ignore[attr-defined]
        rows = overlay_rows(size.height, len(self.watcher.runs) + len(self.refs), bool(self.log_pane.display))
        shown = bool(rows)
        if shown:
            self.overlay.set_rows(rows, size.width)
        if self.overlay.display != shown:
            self.overlay.display = shown
            if shown:
                self._update_overlay()
        return rows + 1 if rows else 0

    def _update_overlay(self) -> None:
        if self.overlay.display:  # hidden: nothing is built; shown again, it draws the latest views
            self.overlay.set_curves(curves_of([v for _, v in sorted(self.views.items())], self.refs))

    def load_ref(self, arg: str) -> None:
        """The palette's `ref RUN`: read the run once off the UI thread (a long record takes seconds)."""
        from app.refs import RefError, load_ref

        def read() -> None:
            try:
                view = load_ref(arg, self.runs_dir)
            except RefError as e:
                self.call_from_thread(self.notify, str(e).removeprefix("--"), title="ref",  # type: ignore[attr-defined]
                                      severity="error", timeout=10)
                return
            self.call_from_thread(self.add_ref, view)  # type: ignore[attr-defined]

        self.run_worker(read, thread=True, name="ref", group="ref", exit_on_error=False)  # type: ignore[attr-defined]

    def add_ref(self, view: RunView) -> None:
        """A reference run read by the palette's `ref RUN` (app.refs.load_ref)."""
        self.refs.append(view)
        self.notify(f"ref: {view.name} added to the overlay ({view.epoch} epochs)",  # type: ignore[attr-defined]
                    title="ref", timeout=4)
        self._apply_mode()  # type: ignore[attr-defined]  # a second curve may be what shows the overlay
        self._update_overlay()

    def action_overlay_ema(self) -> None:
        self.notify(f"overlay smoothing: {ema_words(self.overlay.cycle_ema())}", timeout=3)  # type: ignore[attr-defined]

    def action_overlay_align(self) -> None:
        self.notify(f"overlay x axis: {self.overlay.toggle_align()}s", timeout=3)  # type: ignore[attr-defined]
