"""A real one-machine SLURM cluster for the session (tests/slurm/cluster.py).

Started once, the first time a test here needs it; cancelled jobs drained and every daemon
stopped at the end. Where it cannot start: with CI=true the tests FAIL with the reason (.ci/run
installs the packages as root); elsewhere they skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from cluster import Cluster, ClusterError, missing

ROOT = Path(__file__).resolve().parents[2]


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"SLURM test cluster unavailable in CI: {why}", pytrace=False)
    pytest.skip(f"SLURM test cluster unavailable: {why}")


@pytest.fixture(scope="session")
def slurm_cluster():
    why = missing()
    if why:
        _unavailable(why)
    # not under pytest's tmp folder: that one is private to root, and mariadbd runs as mysql
    root = tempfile.mkdtemp(prefix="segwatch-slurm-")
    os.chmod(root, 0o755)
    c = Cluster(root)
    old = os.environ.get("SLURM_CONF")
    try:
        c.up()
    except ClusterError as e:
        c.down()
        _unavailable(str(e))
    os.environ["SLURM_CONF"] = str(c.conf)
    try:
        yield c
    finally:
        c.run("scancel", "--full", "--user", "root", check=False)
        end = time.monotonic() + 30
        while time.monotonic() < end and c.run("squeue", "-h", check=False).stdout.strip():
            time.sleep(0.5)
        c.down()
        shutil.rmtree(root, ignore_errors=True)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture
def slurm_env(slurm_cluster, tmp_path):
    """Environment for `segwatch` subprocesses: the cluster, one thread, no user defaults file."""
    env = {**os.environ, "SLURM_CONF": str(slurm_cluster.conf), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "SEGWATCH_SLURM_POLL_S": "0.5"}
    env.pop("SEGWATCH_SLURM_CONFIG", None)
    return env


