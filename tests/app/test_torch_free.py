"""The app never loads torch, numpy, PIL or submitit: every module of ``app`` (found with pkgutil, so a new one is
covered without being listed) is imported in a fresh interpreter, and the parser is built, which
imports every verb's module. Whoever first imports a forbidden package is named with its import chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "numpy", "PIL", "submitit")  # submitit: SLURM jobs are plain sbatch scripts

CHILD = r"""
import importlib, json, pkgutil, sys, traceback
FORBIDDEN = set(sys.argv[1].split(","))
culprits = {}

class Witness:  # records who imports a forbidden package first, then lets the normal finders act
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in FORBIDDEN and top not in culprits:
            culprits[top] = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                             if "/app/" in f.filename or "/trainer/" in f.filename]
        return None

sys.meta_path.insert(0, Witness())
import app
mods = sorted(m.name for m in pkgutil.walk_packages(app.__path__, "app.") if not m.name.endswith("__main__"))
for m in mods:
    importlib.import_module(m)
import app.cli
app.cli.build_parser()
loaded = sorted({m.split(".")[0] for m in sys.modules} & FORBIDDEN)
print(json.dumps({"modules": mods, "loaded": loaded, "culprits": culprits}))
"""


def test_no_app_module_imports_torch_numpy_or_pil():
    p = subprocess.run([sys.executable, "-c", CHILD, ",".join(FORBIDDEN)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"app.cli", "app.tui.app", "app.supervise", "app.plan.scheduler", "app.health.schema"} <= set(got["modules"])
    assert got["loaded"] == [], f"the app loaded {got['loaded']}; first imported by {got['culprits']}"


def test_the_walk_sees_a_module_that_imports_torch(tmp_path):
    """The check can fail: a stand-in ``app`` package with one module importing a forbidden package is caught."""
    pkg = tmp_path / "app"
    (pkg / "deep").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("def build_parser():\n    return None\n")
    (pkg / "deep" / "__init__.py").write_text("")
    (pkg / "deep" / "heavy.py").write_text("try:\n    import PIL\nexcept ImportError:\n    pass\n")
    p = subprocess.run([sys.executable, "-c", CHILD, "PIL"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert "app.deep.heavy" in got["modules"]
    assert "PIL" in got["culprits"] and any("heavy.py" in f for f in got["culprits"]["PIL"])
