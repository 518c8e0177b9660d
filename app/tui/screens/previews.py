"""`m`: the selected run's mask previews (image | truth | prediction | errors), one validation image
at a time, following the newest epoch until the user steps back.

Drawn with half blocks (two pixels per character cell, truecolour), by :class:`HalfBlocks` here
rather than textual-image: importing textual-image queries the terminal for Sixel/Kitty support,
which only works before Textual starts, so it would put PIL and numpy on the cockpit's start-up
path for every user (docs/tui.md). PIL is imported when this screen first decodes a picture.
"""

from __future__ import annotations

import os
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from app.runlib import previews as pv
from app.runlib import safeio
from trainer.core.classes import CLASS_COLOURS, CLASS_NAMES, SMALL_CLASSES


class HalfBlocks:
    """A PIL RGB image as rich segments: '▀' with the upper pixel as foreground, the lower as background,
    scaled (nearest: masks keep their exact colours) to fit the width and ``max_rows`` cells."""

    def __init__(self, image: Any, max_rows: int) -> None:
        self.image, self.max_rows = image, max(1, max_rows)

    def __rich_console__(self, console: Any, options: Any):
        from PIL import Image

        w, h = self.image.size
        s = min(options.max_width / w, 2 * self.max_rows / h)
        cw, ch = max(1, int(w * s)), max(2, int(h * s) // 2 * 2)
        im = self.image.resize((cw, ch), Image.NEAREST)
        px = im.load()
        for y in range(0, ch, 2):
            for x in range(cw):
                top, bot = px[x, y], px[x, y + 1]
                yield Segment("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                         bgcolor=f"rgb({bot[0]},{bot[1]},{bot[2]})"))
            yield Segment.line()


def legend(present: list[int]) -> Text:
    t = Text()
    for c in present:
        r, g, b = CLASS_COLOURS[c]
        t.append("██", style=f"rgb({r},{g},{b})")
        t.append(f" {CLASS_NAMES[c]}  ")
    return t


class PreviewScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("n", "image(1)", "Next image", id="previews.next"),
        Binding("N", "image(-1)", "Previous image", id="previews.prev"),
        Binding("b", "epoch(-1)", "Epoch back", id="previews.back"),
        Binding("f", "epoch(1)", "Epoch forward", id="previews.forward"),
        Binding("escape,m,q", "close", "Close", id="previews.close"),
    ]

    def __init__(self, run_dir: str | os.PathLike, name: str) -> None:
        super().__init__(id="preview-screen")
        self.run_dir, self.run_name = run_dir, name
        self.index: pv.Index | None = None
        self.epoch: int | None = None  # shown; None = follow the newest
        self.follow = True
        self.image_i = 0
        self.error: str | None = None
        self._index_sig: tuple | None = None
        self._pic: tuple[int, Any] | None = None  # (epoch, decoded picture)
        self.title_w = Static(id="preview-title")
        self.pic_w = Static(id="preview-pic")
        self.info_w = Static(id="preview-info")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog preview-box"):
            yield self.title_w
            yield self.pic_w
            yield self.info_w
            yield Static(Text("n/N image · b/f epoch back/forward (f at the newest follows it) · m/escape closes",
                              style="dim"))

    def on_mount(self) -> None:
        self.refresh_previews()
        self.set_interval(1.0, self.refresh_previews)

    # --- data -----------------------------------------------------------------------------
    def refresh_previews(self) -> None:
        """Re-read index.json when it changed (stat only otherwise); follow the newest epoch."""
        try:
            st = os.stat(pv.folder(self.run_dir) / "index.json", follow_symlinks=False)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            if sig != self._index_sig:
                self.index, self._index_sig, self.error = pv.read_index(self.run_dir), sig, None
        except FileNotFoundError:
            self.index, self.error = None, None
        except (safeio.Refused, OSError) as e:
            self.index, self.error = None, str(e)
        if self.index and self.index.epochs:
            if self.follow or self.epoch not in self.index.epochs:
                self.epoch = self.index.epochs[-1]
            self.image_i %= len(self.index.rows)
        self.draw()

    def picture(self) -> Any:
        if self.epoch is None:
            return None
        if self._pic is None or self._pic[0] != self.epoch:
            path = pv.png_path(self.run_dir, self.epoch)
            self._pic = (self.epoch, pv.decode(pv.read_png(self.run_dir, self.epoch), path))
        return self._pic[1]

    def draw(self) -> None:
        name = safeio.clean(self.run_name)
        if self.index is None or not self.index.epochs:
            self.title_w.update(Text(f"{name}: mask previews", style="bold"))
            self.pic_w.update(Text(self.error or "No previews yet: the trainer writes them at each validation "
                                   "(previews/ in the run directory).", style="yellow" if self.error else ""))
            self.info_w.update("")
            return
        try:
            pic = self.picture()
        except FileNotFoundError:
            pic, self.error = None, f"epoch_{self.epoch:04d}.png is gone (older previews are pruned)"
        except (safeio.Refused, OSError) as e:
            pic, self.error = None, str(e)
        eps = self.index.epochs
        where = "newest, following" if self.follow else f"{eps.index(self.epoch) + 1} of {len(eps)}"
        self.title_w.update(Text.assemble((f"{name}: epoch {self.epoch}", "bold"), f" ({where}) · image "
                                          f"{self.image_i + 1} of {len(self.index.rows)} · "
                                          "image | truth | prediction | errors"))
        if pic is None:
            self.pic_w.update(Text(self.error or "", style="yellow"))
        else:
            rows = max(4, self.size.height - 8) if self.size.height else 16
            self.pic_w.update(HalfBlocks(pv.row(pic, self.index, self.image_i), rows))
        small = self.index.small_parts[self.image_i]
        info = Text("errors: ")
        info.append("red", style="rgb(230,40,40)")
        info.append(" wrong pixel, ")
        info.append("yellow", style="rgb(255,230,0)")
        info.append(" wrong on a small part · small parts here: ")
        info.append_text(legend([c for c in small if c in SMALL_CLASSES]))
        self.info_w.update(info)

    # --- keys -----------------------------------------------------------------------------
    def action_image(self, d: int) -> None:
        if self.index:
            self.image_i = (self.image_i + d) % len(self.index.rows)
            self.draw()

    def action_epoch(self, d: int) -> None:
        if not self.index or self.epoch is None:
            return
        eps = self.index.epochs
        k = max(0, min(len(eps) - 1, eps.index(self.epoch) + d if self.epoch in eps else len(eps) - 1))
        self.epoch = eps[k]
        self.follow = k == len(eps) - 1
        self.draw()

    def action_close(self) -> None:
        self.dismiss(None)
