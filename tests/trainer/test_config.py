"""The config schema: every shipped config loads; every mistake names file, key and what is allowed."""

from pathlib import Path

import pytest

from trainer.core.config import PARAM_CAP, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = ["baseline.yaml", "lmsa.yaml", "lmsa_focal.yaml", "lmsa_aggressive.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.name == Path(name).stem
    assert cfg.model.max_params == PARAM_CAP


def test_plan_values_are_kept_exactly():
    focal = load_config(CONFIGS / "lmsa_focal.yaml")
    assert (focal.loss.use_focal, focal.loss.focal_alpha, focal.loss.focal_gamma, focal.loss.dice_weight) == (True, 0.25, 2.0, 1.0)
    assert (focal.training.learning_rate, focal.training.epochs, focal.training.warmup_epochs) == (5e-4, 250, 10)
    agg = load_config(CONFIGS / "lmsa_aggressive.yaml")
    assert (agg.loss.focal_alpha, agg.loss.focal_gamma, agg.loss.dice_weight, agg.loss.use_class_weights) == (0.5, 2.5, 1.5, True)
    assert (agg.training.learning_rate, agg.training.batch_size, agg.training.epochs, agg.training.dropout) == (3e-4, 24, 300, 0.2)
    base = load_config(CONFIGS / "baseline.yaml")
    assert base.model.attention == "none" and not base.loss.use_focal
    assert load_config(CONFIGS / "lmsa.yaml").model.attention == "lmsa"


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return p


@pytest.mark.parametrize(
    "text, needles",
    [
        ("loss:\n  focal_gama: 2.0\n", ["loss.focal_gama", "did you mean 'focal_gamma'"]),
        ("training:\n  focal_gamma: 2.0\n", ["training.focal_gamma", "did you mean 'loss.focal_gamma'"]),
        ("trainig:\n  epochs: 3\n", ["trainig", "did you mean 'training'"]),
        ("training:\n  learning_rate: 0\n", ["training.learning_rate", "(0, 1]"]),
        ("training:\n  learning_rate: -1e-3\n", ["training.learning_rate", "allowed"]),
        ("training:\n  learning_rate: fast\n", ["training.learning_rate", "wrong type"]),
        ("training:\n  learning_rate: .nan\n", ["training.learning_rate", "finite"]),
        ("training:\n  epochs: 3.5\n", ["training.epochs", "wrong type"]),
        ("training:\n  epochs: true\n", ["training.epochs", "wrong type"]),
        ("training:\n  epochs: 10\n  warmup_epochs: 10\n", ["training.warmup_epochs", "< training.epochs"]),
        ("training:\n  dropout: 1.0\n", ["training.dropout", "[0, 1)"]),
        ("loss:\n  focal_gamma: -0.5\n", ["loss.focal_gamma", "[0, 10]"]),
        ("loss:\n  focal_alpha: 1.5\n", ["loss.focal_alpha", "list of 19"]),
        ("loss:\n  focal_alpha: [0.25, 0.5]\n", ["loss.focal_alpha", "list of 19"]),
        ("loss:\n  use_focal: yes please\n", ["loss.use_focal", "true | false"]),
        ("augmentation:\n  scale_range: [1.2, 0.8]\n", ["augmentation.scale_range", "lo <= hi"]),
        ("model:\n  attention: transformer\n", ["model.attention", "none | lmsa"]),
        ("training: 5\n", ["training", "expected a mapping"]),
        ("- a\n- b\n", ["expected a mapping", "list"]),
        ("", ["empty"]),
        ("loss:\n  focal_gamma: 2.0\n  focal_gamma: 1.0\n", ["duplicate key 'focal_gamma'", "line 3"]),
        ("loss: [\n", ["invalid YAML", "line"]),
        (b"name: caf\xe9\n", ["not UTF-8"]),
    ],
)
def test_bad_configs_name_file_key_and_allowed(tmp_path, text, needles):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(p) in msg
    for n in needles:
        assert n in msg


def test_yaml11_exponent_strings_are_numbers(tmp_path):
    cfg = load_config(write(tmp_path, "training:\n  learning_rate: 5e-4\n  weight_decay: 1e-4\n"))
    assert cfg.training.learning_rate == pytest.approx(5e-4)
    assert isinstance(cfg.training.weight_decay, float)


def test_per_class_alpha_list_is_accepted(tmp_path):
    cfg = load_config(write(tmp_path, "loss:\n  focal_alpha: [" + ", ".join(["0.5"] * 19) + "]\n"))
    assert cfg.loss.focal_alpha == [0.5] * 19


def test_set_overrides_are_validated_the_same_way():
    cfg = load_config(CONFIGS / "lmsa_focal.yaml", ["loss.focal_gamma=1.5", "training.epochs=3"])
    assert cfg.loss.focal_gamma == 1.5 and cfg.training.epochs == 3
    with pytest.raises(ConfigError, match=r"--set.*loss.focal_gama.*did you mean 'loss.focal_gamma'"):
        load_config(CONFIGS / "lmsa_focal.yaml", ["loss.focal_gama=1.5"])
    with pytest.raises(ConfigError, match=r"loss.focal_gamma = -1.0: out of range"):
        load_config(CONFIGS / "lmsa_focal.yaml", ["loss.focal_gamma=-1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(CONFIGS / "lmsa_focal.yaml", ["loss.focal_gamma"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_shortening_epochs_on_the_command_line_keeps_the_warmup_share():
    cfg = load_config(CONFIGS / "lmsa_aggressive.yaml", ["training.epochs=3"])
    assert cfg.training.epochs == 3 and cfg.training.warmup_epochs < 3
    cfg = load_config(CONFIGS / "lmsa_aggressive.yaml", ["training.epochs=100"])
    assert cfg.training.warmup_epochs == 10  # not shortened below the file's warmup: untouched
    with pytest.raises(ConfigError, match="training.warmup_epochs = 10: must be < training.epochs"):
        load_config(CONFIGS / "lmsa_aggressive.yaml", ["training.epochs=3", "training.warmup_epochs=10"])


def test_model_width_below_what_the_model_builds_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"model.width = 4: out of range; allowed: 0 \(the model's default\) or 8..256"):
        load_config(write(tmp_path, "model:\n  width: 4\n"))
