"""Health rules: judge training runs against the plan's signals, suggest presets.

Pure Python + PyYAML (no torch, no UI), for the TUI, ``segwatch ls`` and reports::

    from app.health import load_rules, evaluate, resolve_preset
    rules = load_rules(overrides=cfg.health, source="runs/a/config.yaml")
    verdict = evaluate(epoch_events, rules, live=live, run_state="running")
    verdict.status, verdict.phase, verdict.signals, verdict.actions, verdict.summary

Rules, definitions and presets: docs/health.md; defaults: app/health/default_rules.yaml.
"""

from app.health.evaluate import RUN_STATES, Action, Signal, Verdict, applied_presets, evaluate
from app.health.presets import describe_ops, list_presets, resolve_preset
from app.health.rules import DEFAULT_RULES_PATH, RulesError, load_rules, plot_thresholds
from app.health.schema import LIVE_KEYS, SIGNAL_IDS, Preset, Rules
from app.health.signals import LABELS

__all__ = [
    "Action", "DEFAULT_RULES_PATH", "LABELS", "LIVE_KEYS", "Preset", "RUN_STATES", "Rules", "RulesError",
    "SIGNAL_IDS", "Signal", "Verdict", "applied_presets", "describe_ops", "evaluate", "list_presets", "load_rules", "plot_thresholds",
    "resolve_preset",
]
