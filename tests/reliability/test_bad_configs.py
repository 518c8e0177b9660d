"""Bad configs: a table and a generated corpus of mutations of the shipped configs.

Every case must exit 2 with ONE line on stderr naming the key (and the file), and leave no run
directory behind: checked in-process through ``trainer.cli.main`` for the generated corpus (fast),
and as real processes (`python -m trainer`, `segwatch run`) for the table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from faults import CONFIGS, SHIPPED, run_trainer, segwatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer import cli
from trainer.core.config import _SECTION_CLASSES, Config, ConfigError, load_config

SECTIONS = {sec: [f.name for f in dataclasses.fields(cls)] for sec, cls in _SECTION_CLASSES.items()}
TOP = [f.name for f in dataclasses.fields(Config) if f.name not in SECTIONS and f.name != "health"]
KEYS = [(None, k) for k in TOP] + [(s, k) for s, ks in SECTIONS.items() for k in ks]
BOOL_KEYS = {(s, f.name) for s, cls in _SECTION_CLASSES.items() for f in dataclasses.fields(cls)
             if f.type in (bool, "bool") or "bool_words" in f.metadata}  # amp/channels_last: YAML's on/off
STRING_OK = {(None, "name"), ("data", "root"), ("data", "cache_dir")}  # any string is a valid value there

# values that no key accepts (a mutation is only generated where it is certainly invalid)
BAD_EVERYWHERE = [float("nan"), float("inf"), -float("inf"), -1, -0.5, 10**400, 1e300, {"x": 1}, [1, "x"], None]
BAD_UNLESS_STRING = ["not-a-value", ""]
BAD_UNLESS_BOOL = [True, False]


def shipped(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def dotted(sec: str | None, key: str) -> str:
    return key if sec is None else f"{sec}.{key}"


def expect_exit_2(tmp_path: Path, path: Path, needle: str, capsys) -> str:
    """Run the trainer's CLI in-process on ``path``: exit 2, one line naming ``needle``, no run dir."""
    try:
        load_config(path)
    except ConfigError:
        pass
    else:  # do not start a 250-epoch training in the test process
        raise AssertionError(f"{path.name}: accepted, expected an error naming {needle!r}:\n{path.read_bytes()[:400]!r}")
    run_dir = tmp_path / "run"
    capsys.readouterr()
    rc = cli.main(["--config", str(path), "--run-dir", str(run_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("segwatch trainer: error: "), err
    assert needle in err, f"{needle!r} not named in: {err}"
    assert str(path) in err
    assert not run_dir.exists()
    return err


mutation = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(KEYS), st.sampled_from(BAD_EVERYWHERE + BAD_UNLESS_STRING + BAD_UNLESS_BOOL)),
    st.tuples(st.just("misspell"), st.sampled_from(KEYS), st.integers(0, 10**6)),
    st.tuples(st.just("unknown"), st.sampled_from([None, *SECTIONS]), st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True)),
    st.tuples(st.just("empty_section"), st.sampled_from(list(SECTIONS)), st.none()),
    st.tuples(st.just("not_a_mapping"), st.sampled_from(list(SECTIONS)), st.sampled_from([5, "x", [1, 2], True, 1.5])),
)


def _misspell(key: str, seed: int, taken: list[str]) -> str:
    ops = [lambda k, i: k[:i] + k[i + 1:], lambda k, i: k[:i] + k[i] + k[i:], lambda k, i: k[:i] + "x" + k[i:],
           lambda k, i: k[:i] + k[i + 1:i + 2] + k[i:i + 1] + k[i + 2:]]
    for attempt in range(8):
        op = ops[(seed + attempt) % len(ops)]
        out = op(key, (seed // 4 + attempt) % len(key))
        if out and out not in taken and out != key:
            return out
    return key + "_x"


def apply_mutation(data: dict, m: tuple) -> tuple[dict, str] | None:
    """Mutate ``data``; returns (data, the key the error must name) or None when not invalid."""
    kind, where, arg = m
    if kind == "value":
        sec, key = where
        if arg in BAD_UNLESS_STRING and (sec, key) in STRING_OK or arg in BAD_UNLESS_BOOL and (sec, key) in BOOL_KEYS:
            return None
        if arg is None and ((sec, key) in STRING_OK or (sec, key) in {("loss", "focal_alpha"), ("debug", "nan_at_step"), ("debug", "inf_pixels_at_step")}):
            return None  # null is a documented value there
        if (sec, key) == (None, "name") and arg in (None,):
            return None
        node = data if sec is None else data.setdefault(sec, {})
        node[key] = arg
        return data, dotted(sec, key)
    if kind == "misspell":
        (sec, key), seed = where, arg
        taken = TOP + list(SECTIONS) + ["health"] if sec is None else SECTIONS[sec]
        bad = _misspell(key, seed, taken)
        node = data if sec is None else data.setdefault(sec, {})
        node[bad] = node.pop(key, 1)
        return data, dotted(sec, bad)
    if kind == "unknown":
        sec, key = where, arg
        taken = TOP + list(SECTIONS) + ["health"] if sec is None else SECTIONS[sec]
        if key in taken:
            return None
        node = data if sec is None else data.setdefault(sec, {})
        node[key] = 1
        return data, dotted(sec, key)
    if kind in ("empty_section", "not_a_mapping"):
        data[where] = arg
        return data, where
    raise AssertionError(kind)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(SHIPPED), m=mutation)
def test_generated_mutations_of_shipped_configs_exit_2_naming_the_key(tmp_path_factory, capsys, base, m):
    data = shipped(base)
    mutated = apply_mutation(data, m)
    if mutated is None:
        return  # this value is valid for that key (e.g. a string for data.root)
    data, key = mutated
    tmp = tmp_path_factory.mktemp("cfg")
    path = tmp / base
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    expect_exit_2(tmp, path, key, capsys)


def _text(base: str) -> str:
    return (CONFIGS / base).read_text()


BIG = "9" * 400
# (case id, file content (str or bytes) or a function of a shipped config's text, the key named)
TABLE = [
    ("empty file", "", "empty"),
    ("only a comment", "# nothing here\n", "empty"),
    ("yaml list", "- name: x\n- training: {}\n", "a list"),
    ("yaml scalar", "42\n", "a int"),
    ("non-utf8", b"name: caf\xe9\ntraining:\n  epochs: 3\n", "not UTF-8"),
    ("binary garbage", bytes(range(256)) * 4, "not UTF-8"),
    ("invalid yaml", "training: [\n", "invalid YAML"),
    ("tab indentation", "training:\n\tepochs: 3\n", "invalid YAML"),
    ("duplicate key", lambda t: t.replace("  epochs: 250\n", "  epochs: 250\n  epochs: 5\n"), "duplicate key 'epochs'"),
    ("duplicate section", lambda t: t + "training:\n  epochs: 4\n", "duplicate key 'training'"),
    ("misspelt key", lambda t: t.replace("learning_rate", "learnig_rate"), "training.learnig_rate"),
    ("misspelt section", lambda t: t.replace("training:", "trainig:"), "trainig"),
    ("key in the wrong section", lambda t: t + "model:\n  epochs: 3\n" if "model:" not in t else t.replace("model:\n", "model:\n  epochs: 3\n"), "model.epochs"),
    ("dedented section body", "name: x\ntraining:\nlearning_rate: 1e-3\nepochs: 5\n", "training"),
    ("empty section", lambda t: t + "data:\n", "data"),
    ("string for int", lambda t: t.replace("epochs: 250", "epochs: many"), "training.epochs"),
    ("float for int", lambda t: t.replace("epochs: 250", "epochs: 2.5"), "training.epochs"),
    ("bool for float", lambda t: t.replace("dropout: 0.15", "dropout: yes"), "training.dropout"),
    ("string for bool", lambda t: t.replace("hflip: true", "hflip: sometimes"), "augmentation.hflip"),
    ("nan", lambda t: t.replace("weight_decay: 1e-4", "weight_decay: .nan"), "training.weight_decay"),
    ("inf", lambda t: t.replace("dropout: 0.15", "dropout: .inf"), "training.dropout"),
    ("nan inside a list", lambda t: t.replace("[0.85, 1.15]", "[0.85, .nan]"), "augmentation.scale_range"),
    ("huge int for a float", lambda t: t.replace("weight_decay: 1e-4", f"weight_decay: {BIG}"), "training.weight_decay"),
    ("huge int for an int", lambda t: t.replace("epochs: 250", f"epochs: {BIG}"), "training.epochs"),
    ("huge float", lambda t: t.replace("rotation: 20", "rotation: 1.0e+300"), "augmentation.rotation"),
    ("negative", lambda t: t.replace("batch_size: ", "batch_size: -"), "training.batch_size"),
    ("zero batch", lambda t: t.replace("batch_size: 16", "batch_size: 0"), "training.batch_size"),
    ("out of range", lambda t: t.replace("dropout: 0.15", "dropout: 1.5"), "training.dropout"),
    ("warmup past the end", lambda t: t.replace("warmup_epochs: 10", "warmup_epochs: 900"), "training.warmup_epochs"),
    ("huge ignore index", lambda t: t.replace("loss:\n", f"loss:\n  ignore_index: {10**30}\n"), "loss.ignore_index"),
    ("huge patience", lambda t: t.replace("training:\n", f"training:\n  patience: {10**30}\n"), "training.patience"),
    ("huge string value", lambda t: t.replace("attention: ", "attention: " + "x" * 1_000_000 + "_"), "model.attention"),
    ("name with a NUL byte", lambda t: 'name: "a\\0b"\n' + t.split("\n", 2)[2], "name"),
    ("name '..'", lambda t: "name: '..'\n" + t.split("\n", 2)[2], "name"),
    ("key that is a list", "? [a, b]\n: 1\n", "key"),
    ("key with a newline", lambda t: t.replace("training:\n", 'training:\n  "lr\\nx": 1\n'), "training.'lr\\nx'"),
    ("nested too deep", "training: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("alias bomb", "health:\n  a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)), "aliases"),
    ("python tag", "name: !!python/object/apply:os.system ['echo pwned > pwned.txt']\n", "invalid YAML"),
    ("huge file", "# " + "x" * (2 << 20) + "\nname: big\n", "too large"),
]


def _materialise(case, tmp_path: Path) -> Path:
    _, content, _ = case
    if callable(content):
        content = content(_text("lmsa_focal.yaml"))
    p = tmp_path / "bad config.yaml"  # a space in the path: nothing may split it
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


@pytest.mark.parametrize("case", TABLE, ids=[c[0].replace(" ", "_") for c in TABLE])
def test_table_in_process(tmp_path, capsys, case):
    expect_exit_2(tmp_path, _materialise(case, tmp_path), case[2], capsys)


def test_missing_sections_take_their_defaults(tmp_path):
    """Leaving a section out is not a mistake: every key has a default (the shipped configs omit
    data and debug). A section present but empty is an error (see the table)."""
    for base in SHIPPED:
        for sec in [s for s in shipped(base) if s in SECTIONS]:
            data = shipped(base)
            del data[sec]
            p = tmp_path / base
            p.write_text(yaml.safe_dump(data))
            cfg = load_config(p)
            assert dataclasses.asdict(getattr(cfg, sec)) == dataclasses.asdict(_SECTION_CLASSES[sec]())


REAL = ["empty file", "yaml list", "non-utf8", "duplicate key", "misspelt key", "nan", "huge int for a float",
        "negative", "key that is a list", "nested too deep", "alias bomb", "python tag", "name with a NUL byte"]


@pytest.mark.parametrize("case", [c for c in TABLE if c[0] in REAL], ids=[c[0].replace(" ", "_") for c in TABLE if c[0] in REAL])
def test_table_as_real_processes(tmp_path, case):
    """`python -m trainer` and `segwatch run`: exit 2, one line naming the key, nothing created."""
    path = _materialise(case, tmp_path)
    run_dir, runs = tmp_path / "run", tmp_path / "runs"
    p = run_trainer(["--config", str(path), "--run-dir", str(run_dir), "--device", "cpu"], timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and case[2] in p.stderr, p.stderr
    assert not run_dir.exists()
    q = segwatch("run", str(path), "--runs-dir", str(runs), "--headless", "--device", "cpu", timeout=120)
    assert q.returncode == 2 and q.stderr.count("\n") == 1 and case[2] in q.stderr, q.stderr
    assert not runs.exists() or not any(runs.iterdir())
    assert not (tmp_path / "pwned.txt").exists() and not Path("pwned.txt").exists()


@pytest.mark.parametrize("override, key", [
    ("training.epochs=nan", "training.epochs"), ("training.learning_rate=-1", "training.learning_rate"),
    ("training.learnig_rate=1e-3", "training.learnig_rate"), (f"training.dropout={BIG}", "training.dropout"),
    ("loss.focal_alpha=[1, 2]", "loss.focal_alpha"), ("training=5", "training"),
    ("training.batch_size=" + "[" * 3000, "training.batch_size"),
])
def test_bad_overrides_exit_2(tmp_path, capsys, override, key):
    run_dir = tmp_path / "run"
    rc = cli.main(["--config", str(CONFIGS / "baseline.yaml"), "--set", override, "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and key in err, err
    assert not run_dir.exists()
