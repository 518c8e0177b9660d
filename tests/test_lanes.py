"""The lanes themselves (tests/lanes.py): what the collection puts in the slow lane, and the fast lane's guard."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import lanes
import pytest

sys.path.insert(0, str(lanes.TESTS / "reliability"))
sys.path.insert(0, str(lanes.TESTS / "app"))
import faults  # noqa: E402
from fake_trainer import FakeTrainer  # noqa: E402


def _item(function, *fixtures, marks=()):
    return SimpleNamespace(function=function, fixturenames=list(fixtures),
                           get_closest_marker=lambda name: name if name in marks else None)


def _helper_starting_a_trainer(run_dir):
    return subprocess.Popen([sys.executable, "-m", "trainer", *faults.trainer_argv(run_dir)])


def _test_through_a_helper(tmp_path):  # never run: the collection reads it
    _helper_starting_a_trainer(tmp_path)


def _test_with_the_fake_trainer(tmp_path):  # never run
    FakeTrainer(tmp_path)


def test_the_collection_follows_helpers_and_fixtures_to_a_trainer():
    assert lanes.spawns_slow(_item(_test_through_a_helper, "tmp_path")) == "reaches '\"-m\", \"trainer\"'"
    assert lanes.spawns_slow(_item(_test_with_the_fake_trainer, "tmp_path")) is None
    assert lanes.spawns_slow(_item(_test_with_the_fake_trainer, "tiny_ablation")) == "uses tiny_ablation"
    assert lanes.spawns_slow(_item(_test_with_the_fake_trainer, marks=("e2e",))) == "marked e2e"


@pytest.mark.parametrize("argv, what", [
    ([sys.executable, "-m", "trainer", "--help"], "python -m trainer"),
    ([sys.executable, "-m", "app.supervise", "d", "--", "x"], "python -m app.supervise"),
    (["/usr/bin/tmux", "-L", "s", "ls"], "tmux"),
    ("slurmctld -D", "slurmctld"),
    ([sys.executable, "-c", "pass"], None),
])
def test_what_the_guard_counts_as_a_trainer_or_a_terminal(argv, what):
    assert lanes._spawn_of(argv) == what


def test_the_fast_lane_guard_refuses_an_unmarked_trainer_start(monkeypatch):
    request = SimpleNamespace(node=SimpleNamespace(nodeid="t::unmarked", get_closest_marker=lambda name: None))
    g = lanes.guard(request, monkeypatch)
    next(g)
    subprocess.run([sys.executable, "-c", "pass"], check=True)  # an ordinary child is fine
    with pytest.raises(lanes.SpawnInFastLane, match=r"t::unmarked starts python -m trainer .*@pytest.mark.slow"):
        subprocess.Popen([sys.executable, "-m", "trainer", "--help"])
    with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.slow"):  # even if the code swallowed it
        next(g)


def _grouped(*, marks=(), fixtures=(), nodeid="tests/app/test_x.py::test_y"):
    """A collected item as `lanes.group_for_xdist` sees it; returns the xdist group it gets, or None."""
    got = []
    defs = {name: [SimpleNamespace(scope=scope, func=func)] for name, scope, func in fixtures}
    item = SimpleNamespace(nodeid=nodeid, _fixtureinfo=SimpleNamespace(name2fixturedefs=defs),
                           get_closest_marker=lambda name: name if name in marks else None,
                           add_marker=lambda m: got.append(m.mark.args[0]))
    lanes.group_for_xdist([item])
    return got[0] if got else None


def _our_fixture():  # stands for a fixture defined under tests/
    pass


def test_xdist_groups_keep_what_a_shared_fixture_builds_in_one_worker():
    """One SLURM cluster per machine, one tiny ablation per session, a module's fixture built once; a
    session fixture of pytest itself (tmp_path_factory) or a function-scoped one groups nothing."""
    from _pytest.tmpdir import tmp_path_factory

    assert _grouped(marks=("slurm",)) == "slurm"
    assert _grouped(fixtures=[("tiny_ablation", "session", _our_fixture), ("m", "module", _our_fixture)]) == "tiny_ablation"
    assert _grouped(fixtures=[("m", "module", _our_fixture)]) == "tests/app/test_x.py"
    assert _grouped(fixtures=[("tmp_path_factory", "session", tmp_path_factory)]) is None
    assert _grouped(fixtures=[("f", "function", _our_fixture)]) is None
    assert _grouped() is None
