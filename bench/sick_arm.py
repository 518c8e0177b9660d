"""One more arm for bench/sick_runs.py: send other values to a copy of a sick run's checkpoint.

    python bench/sick_arm.py BASE NAME KEY=VALUE [KEY=VALUE ...] [--after 10] [--threads 1]

BASE is a variant's folder written by ``bench/sick_runs.py`` (it holds ``sick/``, stopped at its
milestone). The run is copied to ``BASE/NAME``, the values are sent through the control channel
(``Run.send``: what a key in the cockpit does) and it is resumed for ``--after`` epochs; prints
val F of those epochs. Issue 12 used it for the plan's early action on the over-regularised run:
``python bench/sick_arm.py bench/out/sick_runs/reg_heavy early_fix_arm lr=3e-4``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sick_runs import epochs_of, train_until  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("name")
    p.add_argument("sets", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--after", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    from app.runlib import Run

    base = Path(a.base)
    milestone = epochs_of(base / "sick")[-1]["epoch"]
    d = base / a.name
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base / "sick", d)
    for f in ("trainer.pid", "trainer.lock"):
        (d / f).unlink(missing_ok=True)
    values = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.sets)}
    run = Run(d)
    run.refresh()
    run.send("set", values, reason=f"bench/sick_arm.py {a.name}", source="bench")
    train_until([sys.executable, "-m", "trainer", "--resume", str(d), "--device", "cpu"], d, milestone + a.after,
                a.threads, base / f"{a.name}.log")
    print(json.dumps({"arm": a.name, "values": values,
                      "val_f": [round(e["val_f"], 4) for e in epochs_of(d) if e["epoch"] > milestone]}))


if __name__ == "__main__":
    main()
