"""The command palette (ctrl+p): every cockpit key by name, and `set KEY VALUE` for any live value."""

from __future__ import annotations

from functools import partial

import yaml
from textual.command import DiscoveryHit, Hit, Hits, Provider

from trainer.core.live import LIVE_KEYS, format_value, validate
from trainer.core.safe_yaml import typed_value


def parse_value(raw: str):
    """'2e-4' -> 0.0002, 'true' -> True, '[0.8, 1.2]' -> [0.8, 1.2]: as `segwatch set` reads it
    (trainer.core.safe_yaml.typed_value); text that is not YAML is kept as typed (validate refuses it)."""
    try:
        return typed_value(raw)
    except yaml.YAMLError:
        return raw


class SegwatchCommands(Provider):
    def _key_commands(self):
        app = self.app
        seen = set()
        for b in getattr(app, "BINDINGS", []):
            if b.action in seen or not b.description:
                continue
            seen.add(b.action)
            key = b.key.replace("question_mark", "?")
            yield b.description, f"key {key} — acts on the selected run", partial(app.run_action, b.action)

    async def discover(self) -> Hits:
        for title, help_text, cb in self._key_commands():
            yield DiscoveryHit(title, cb, help=help_text)
        yield DiscoveryHit("set KEY VALUE", self._usage, help="type e.g. `set lr 2e-4`: sets a live value")
        yield DiscoveryHit("ref RUN", self._ref_usage, help="type e.g. `ref baseline`: overlay a run as a reference curve")

    def _ref_usage(self) -> None:
        self.app.notify("Type `ref RUN` in the palette (a run name under the runs folder, or a run directory): "
                        "its curves join the overlay, dotted, as 'ref: NAME'.")

    def _usage(self) -> None:
        self.app.notify("Type `set KEY VALUE` in the palette, e.g. `set lr 2e-4`. Keys: " + ", ".join(LIVE_KEYS))

    async def search(self, query: str) -> Hits:
        app = self.app
        parts = query.strip().split(None, 2)
        if parts and parts[0].lower() == "ref":
            arg = query.strip()[3:].strip()
            if not arg:
                yield Hit(1.0, "ref RUN", self._ref_usage, text="ref RUN", help="a run name or a run directory")
                return
            text = f"ref {arg}: overlay it as a reference curve"
            yield Hit(1.0, text, partial(app.load_ref, arg), text=text,
                      help="read once, drawn dotted in the overlay; no pane, no keys, no notifications")
            return
        if parts and parts[0].lower() == "set":
            view = app.views.get(app.selected) if hasattr(app, "views") else None
            live = view.live if view else {}
            name = view.name if view else "the selected run"
            if len(parts) == 3 and parts[1] in LIVE_KEYS:
                key, value = parts[1], parse_value(parts[2])
                old = live.get(key)
                # validated as you type, by the same table the trainer and `segwatch set` use
                epoch = min(view.epoch + 1, view.total_epochs or view.epoch + 1) if view else 1
                _clean, problem = validate({key: value}, live, epoch) if view else ({}, None)
                if problem:
                    text = f"✗ set {key} {parts[2]}: {problem}"
                    yield Hit(1.0, text, partial(app.notify, f"not sent: {problem}", severity="error"), text=text,
                              help=f"allowed: {LIVE_KEYS[key].allowed} — nothing is sent")
                    return
                text = f"set {key} {format_value(old) if old is not None else '?'} → {parts[2]} on {name}"
                yield Hit(1.0, text, partial(app.palette_set, key, value), text=text,
                          help=f"allowed: {LIVE_KEYS[key].allowed}; takes effect at the next {LIVE_KEYS[key].when}")
                return
            if len(parts) >= 2 and not any(k.startswith(parts[1]) for k in LIVE_KEYS):
                _c, problem = validate({parts[1]: None}, live, 1)
                text = f"✗ {problem}"
                yield Hit(1.0, text, partial(app.notify, problem, severity="error"), text=text, help="nothing is sent")
                return
            stem = parts[1] if len(parts) > 1 else ""
            for key, lk in LIVE_KEYS.items():
                if key.startswith(stem):
                    cur = live.get(key)
                    yield Hit(0.5, f"set {key} VALUE", self._usage, text=f"set {key}",
                              help=f"now {format_value(cur) if cur is not None else '?'}; allowed: {lk.allowed}")
            return
        matcher = self.matcher(query)
        for title, help_text, cb in self._key_commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), cb, text=title, help=help_text)
