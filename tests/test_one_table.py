"""One table per fact: the statuses of an ended run and the control commands are each written once in
the source of app/ and trainer/ (every other place imports them)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTS = {
    "ended statuses": {"finished", "early_stop", "stopped", "crashed"},
    "control commands": {"set", "pause", "resume", "stop", "checkpoint"},
}


def _literal_sets():
    for p in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "trainer").rglob("*.py")]):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
                if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                    yield f"{p.relative_to(ROOT)}:{node.lineno}", {e.value for e in node.elts}
            elif isinstance(node, ast.Dict) and node.values and all(
                    isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values):
                yield f"{p.relative_to(ROOT)}:{node.lineno}", {v.value for v in node.values}


def test_each_fact_is_written_once():
    found = {fact: [] for fact in FACTS}
    for where, values in _literal_sets():
        for fact, want in FACTS.items():
            if values in (want, want | {"skipped"}):
                found[fact].append(where)
    assert {fact: len(places) for fact, places in found.items()} == {fact: 1 for fact in FACTS}, found


def test_the_tables_are_the_ones_imported():
    from app.commands import control
    from app.plan import scheduler
    from app.runlib import COMMANDS, ENDED, run
    from trainer import control as trainer_control
    from trainer.core.live import COMMANDS as TRAINER_COMMANDS

    assert COMMANDS is TRAINER_COMMANDS is trainer_control.COMMANDS is run.COMMANDS
    assert control.ENDED is ENDED is scheduler.ENDED and set(ENDED) == FACTS["ended statuses"]


def test_the_palette_and_segwatch_set_read_a_typed_value_alike():
    """One parser for a typed value (trainer.core.safe_yaml.typed_value): YAML plus numbers YAML 1.1 leaves as text."""
    from app.commands.control import parse_assignments
    from app.tui.commands import parse_value

    for raw, want in [("3e-4", 3e-4), ("[1e-3, 2]", [1e-3, 2]), ("[0.8, 1.2]", [0.8, 1.2]), ("true", True), ("5", 5)]:
        got = parse_value(raw)
        assert got == want and type(got) is type(want), (raw, got)
        assert parse_assignments([f"k={raw}"])["k"] == got, raw


def test_number_helpers_have_one_home():
    from trainer.core.safe_yaml import as_number, is_number

    assert [is_number(v) for v in (1, 2.5, True, "1", None, float("nan"))] == [True, True, False, False, False, True]
    assert not is_number(float("inf"), finite=True) and not is_number(10**400, finite=True)
    assert as_number(3) == 3.0 and as_number(False) is None


def test_the_val_f_plot_draws_the_rules_numbers():
    from app.health import load_rules, plot_thresholds
    from app.tui.widgets.plots import DEFAULT_THRESHOLDS

    rules = load_rules()
    assert DEFAULT_THRESHOLDS == plot_thresholds(rules)
    assert DEFAULT_THRESHOLDS["target"] == rules.thresholds.late_success
    assert DEFAULT_THRESHOLDS["milestones"][1] == (rules.milestones.mid_val_f_epoch, rules.thresholds.mid_val_f_healthy)
    own = load_rules(overrides={"thresholds": {"late_success": 0.8}})
    assert plot_thresholds(own)["target"] == 0.8


OLD_CORE_NAMES = ("trainer.config", "trainer.live", "trainer.safe_yaml", "trainer.data.classes", "trainer.fmeasure")


def test_nothing_imports_the_shared_core_by_its_old_name():
    """The shared core has one home, trainer/core/: no module, test, bench or doc uses an old name."""
    import re

    pat = re.compile(r"\b(?:from|import)\s+(" + "|".join(re.escape(n) for n in OLD_CORE_NAMES) + r")\b"
                     r"|from trainer import (?:config|live|safe_yaml|fmeasure)\b|from trainer\.data import classes\b")
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for d in ("app", "trainer", "tests", "bench", "docs", "tools")
            for p in sorted([*(ROOT / d).rglob("*.py"), *(ROOT / d).rglob("*.md")]) for m in pat.finditer(p.read_text())]
    assert hits == []


def test_the_old_names_are_gone():
    """The aliases kept while branches written before the move landed are removed (issue 14)."""
    import importlib.util

    for old in OLD_CORE_NAMES:
        assert importlib.util.find_spec(old) is None, old
