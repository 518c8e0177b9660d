"""Rules files: the defaults, the shipped copy, overrides, and every kind of bad file refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.health import DEFAULT_RULES_PATH, SIGNAL_IDS, RulesError, load_rules
from app.health.schema import SECTIONS, section_fields

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_load_and_hold_the_plan_numbers():
    r = load_rules()
    assert (r.phases.early_last_epoch, r.phases.late_first_epoch) == (20, 150)
    assert (r.milestones.early_val_f_epoch, r.milestones.mid_val_f_epoch) == (10, 100)
    t = r.thresholds
    assert (t.early_val_f_healthy, t.early_val_f_warning, t.loss_gap_max) == (0.30, 0.20, 2.0)
    assert (t.mid_val_f_healthy, t.f_gap_healthy, t.f_gap_overfit, t.oscillation_step) == (0.65, 0.10, 0.15, 0.05)
    assert (t.late_success, t.late_acceptable, t.underfit_val_f) == (0.73, 0.70, 0.65)
    assert r.windows.underfit_epochs == 50
    assert hash(r) == hash(load_rules())  # frozen, comparable
    assert r == load_rules()


def test_configs_copy_is_identical():
    assert (ROOT / "configs" / "health.yaml").read_bytes() == DEFAULT_RULES_PATH.read_bytes()
    assert load_rules(ROOT / "configs" / "health.yaml") == load_rules()


def test_import_stays_light():
    # from trainer/ only the shared core (trainer/core/: YAML reader, config schema, live keys, classes)
    code = ("import sys, app.health; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'textual', 'numpy', 'rich') or (m.startswith('trainer') and m not in "
            "('trainer', 'trainer.core', 'trainer.core.safe_yaml', 'trainer.core.config', 'trainer.core.live', "
            "'trainer.core.classes', 'trainer.core.coerce'))]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_docs_list_every_signal_key_and_preset():
    doc = (ROOT / "docs" / "health.md").read_text(encoding="utf-8")
    for sid in SIGNAL_IDS:
        assert f"`{sid}`" in doc, sid
    for sec, cls in SECTIONS.items():
        for key in section_fields(cls):
            assert f"{sec}.{key}" in doc, f"{sec}.{key}"
    for p in load_rules().presets:
        assert f"`{p.name}`" in doc, p.name


# --- partial files and overrides ---------------------------------------------------------------


def write(tmp_path, text, name="rules.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_partial_file_keeps_the_defaults(tmp_path):
    r = load_rules(write(tmp_path, "thresholds:\n  late_success: 0.8\n"))
    assert r.thresholds.late_success == 0.8 and r.thresholds.late_acceptable == 0.70
    assert r.windows == load_rules().windows


def test_overrides_merge_last(tmp_path):
    p = write(tmp_path, "thresholds: {late_success: 0.8}\n")
    r = load_rules(p, {"thresholds": {"late_success": 0.75}, "windows": {"oscillation": 12}})
    assert r.thresholds.late_success == 0.75 and r.windows.oscillation == 12
    assert r.thresholds.late_acceptable == 0.70


def test_numbers_written_as_strings_are_accepted():
    assert load_rules(overrides={"thresholds": {"val_f_min_slope": "1e-4"}}).thresholds.val_f_min_slope == 1e-4


# --- refusals ---------------------------------------------------------------------------------


BAD_FILES = [
    ("tresholds:\n  late_success: 0.8\n", r"tresholds: unknown key; did you mean 'thresholds'\?"),
    ("thresholds:\n  early_val_f_helthy: 0.3\n",
     r"thresholds\.early_val_f_helthy: unknown key; did you mean 'early_val_f_healthy'\?"),
    ("thresholds:\n  late_success: high\n", r"thresholds\.late_success = 'high': wrong type; expected a number"),
    ("thresholds:\n  early_val_f_healthy: 1.3\n",
     r"thresholds\.early_val_f_healthy = 1\.3: out of range; allowed: an F value in \[0, 1\]"),
    ("thresholds:\n  mid_val_f_healthy: -0.1\n", r"thresholds\.mid_val_f_healthy = -0\.1: out of range"),
    ("thresholds:\n  loss_gap_max: 0\n", r"thresholds\.loss_gap_max = 0\.0: out of range; allowed: a loss difference > 0"),
    ("thresholds:\n  late_success: .nan\n", r"thresholds\.late_success = nan: not a finite number"),
    ("windows:\n  oscillation: -3\n", r"windows\.oscillation = -3: out of range; allowed: an integer in 3\.\.1000"),
    ("windows:\n  loss_gap: 0\n", r"windows\.loss_gap = 0: out of range"),
    ("windows:\n  loss_gap: 2.5\n", r"windows\.loss_gap = 2\.5: wrong type; expected an integer"),
    ("windows:\n  loss_gap: true\n", r"windows\.loss_gap = True: wrong type"),
    ("phases:\n  early_last_epoch: 160\n",
     r"phases\.late_first_epoch = 150: phase boundaries must increase: must be > phases\.early_last_epoch \(160\)"),
    ("phases:\n  early_last_epoch: 20\n  late_first_epoch: 20\n", r"phases\.late_first_epoch = 20: phase boundaries"),
    ("phases:\n  early_last_epoch: 5\n", r"milestones\.early_val_f_epoch = 10: must fall in the early phase"),
    ("milestones:\n  mid_val_f_epoch: 150\n", r"milestones\.mid_val_f_epoch = 150: must fall in the middle phase"),
    ("thresholds:\n  early_val_f_warning: 0.4\n",
     r"thresholds\.early_val_f_warning = 0\.4: must be <= thresholds\.early_val_f_healthy \(0\.3\)"),
    ("thresholds:\n  f_gap_overfit: 0.05\n", r"thresholds\.f_gap_healthy = 0\.1: must be <= thresholds\.f_gap_overfit"),
    ("thresholds:\n  late_acceptable: 0.8\n", r"thresholds\.late_acceptable = 0\.8: must be <= thresholds\.late_success"),
    ("windows:\n  oscillation: 3\n", r"windows\.oscillation_reversals = 2: at most windows\.oscillation - 2 \(1\)"),
    ("phases:\n  middle: [val_f_grow]\n", r"phases\.middle = \['val_f_grow'\]: unknown signal 'val_f_grow' \(did you mean 'val_f_growth'\?\)"),
    ("phases:\n  late: [late_target, late_target]\n", r"phases\.late = .*: lists a name twice"),
    ("phases:\n  late: [run_state]\n", r"run_state is always checked"),
    ("phases:\n  late: [underfitting]\n", r"phases\.late = \['underfitting'\]: 'underfitting' is already in phases\.always"),
    ("late:\n  measure: mean\n", r"late\.measure = 'mean': out of range; allowed: best \| last"),
    ("nonfinite:\n  count_skipped_steps: yes please\n", r"nonfinite\.count_skipped_steps = 'yes please': wrong type"),
    ("version: 2\n", r"version = 2: unsupported version"),
    ("presets:\n  lr_down:\n    ops: {lrr: {mul: 0.5}}\n", r"presets\.lr_down\.ops\.lrr: unknown key; did you mean 'lr'\?"),
    ("presets:\n  lr_down:\n    ops: {lr: {multiply: 0.5}}\n", r"presets\.lr_down\.ops\.lr\.multiply: unknown key"),
    ("presets:\n  lr_down:\n    ops: {lr: {mul: -1}}\n", r"presets\.lr_down\.ops\.lr\.mul = -1: out of range; allowed: a factor in \[0, 100\]"),
    ("presets:\n  x:\n    label: X\n    description: d\n    ops: {dropout: {set: 1.5}}\n",
     r"presets\.x\.ops\.dropout\.set = 1\.5: out of range; allowed: a number in \[0, 0\.95\]"),
    ("presets:\n  x:\n    label: X\n    description: d\n    ops: {scale_range: {mul: 2}}\n",
     r"presets\.x\.ops\.scale_range\.mul: unknown key"),
    ("presets:\n  x:\n    label: X\n    ops: {lr: {mul: 2}}\n", r"presets\.x\.description: missing key"),
    ("presets:\n  lr_down:\n    lable: Lower\n", r"presets\.lr_down\.lable: unknown key; did you mean 'label'\?"),
    ("presets:\n  Bad-Name:\n    label: x\n", r"presets\.Bad-Name = .*: a preset name must be snake_case"),
    ("actions:\n  loss_gap: [{preset: lr_dwn, text: lower the LR}]\n",
     r"actions\.loss_gap\[0\]\.preset = 'lr_dwn': no such preset; did you mean 'lr_down'\?"),
    ("actions:\n  los_gap: []\n", r"actions\.los_gap: unknown key; did you mean 'loss_gap'\?"),
    ("actions:\n  loss_gap: [{preset: lr_down}]\n", r"actions\.loss_gap\[0\]\.text = None: missing or not a string"),
    ("actions:\n  loss_gap: [{preset: lr_down, text: t, state: red}]\n", r"actions\.loss_gap\[0\]\.state = 'red'"),
]


@pytest.mark.parametrize("text, pattern", BAD_FILES)
def test_bad_rules_file_is_refused_naming_the_key(tmp_path, text, pattern):
    p = write(tmp_path, text)
    with pytest.raises(RulesError) as e:
        load_rules(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: "), msg
    assert re.search(pattern, msg), msg


@pytest.mark.parametrize("text, pattern", [
    ("", r"the file is empty"),
    ("- a\n- b\n", r"expected a mapping with keys .* at the top level, got a list"),
    ("thresholds: {late_success: 0.8\n", r"invalid YAML \(line \d+"),
    ("thresholds:\n  late_success: 0.8\n  late_success: 0.9\n", r"duplicate key 'late_success' \(line 3\)"),
])
def test_unreadable_rules_file(tmp_path, text, pattern):
    p = write(tmp_path, text)
    with pytest.raises(RulesError, match=pattern):
        load_rules(p)


def test_missing_file(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.yaml")


def test_not_utf8(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(b"thresholds: {late_success: \xff}\n")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_rules(p)


def test_bad_override_is_named_as_the_run_config():
    with pytest.raises(RulesError) as e:
        load_rules(overrides={"thresholds": {"early_val_f_healthy": 2.0}}, source="runs/a/config.yaml")
    assert str(e.value).startswith("runs/a/config.yaml: health.thresholds.early_val_f_healthy = 2.0: out of range")
    with pytest.raises(RulesError, match=r"^run config: health\.thresholds\.early_val_f_helthy: unknown key; did you mean"):
        load_rules(overrides={"thresholds": {"early_val_f_helthy": 0.1}})
    # a cross-check broken by the override blames the override
    with pytest.raises(RulesError, match=r"^cfg\.yaml: health\.thresholds\.early_val_f_warning = 0\.2: must be <="):
        load_rules(overrides={"thresholds": {"early_val_f_healthy": 0.1}}, source="cfg.yaml")
    with pytest.raises(RulesError, match=r"^cfg\.yaml: health = \['thresholds'\]: wrong type"):
        load_rules(overrides=["thresholds"], source="cfg.yaml")  # type: ignore[arg-type]


def test_default_file_missing_a_key_is_refused(tmp_path, monkeypatch):
    import app.health.rules as rules_mod

    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    del data["windows"]["f_gap"]
    p = write(tmp_path, yaml.safe_dump(data, allow_unicode=True), "default_rules.yaml")
    monkeypatch.setattr(rules_mod, "DEFAULT_RULES_PATH", p)
    with pytest.raises(RulesError, match=r"windows\.f_gap: missing key"):
        rules_mod.load_rules()


def test_docs_synthetic_example_is_valid():
    doc = (ROOT / "docs" / "health.md").read_text(encoding="utf-8")
    block = doc.split("# in a run config\n", 1)[1].split("```", 1)[0]
    health = yaml.safe_load(block)["health"]
    r = load_rules(overrides=health, source="docs/health.md")
    assert r.phases.early_last_epoch == 4 and r.thresholds.late_success == 0.60
