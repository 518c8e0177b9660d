"""Test lanes: the fast lane is ``python -m pytest -q -m "not slow"``; CI runs everything.

A test is put in the slow lane automatically (tests/conftest.py calls `mark_slow` at collection) when
it starts a trainer or a terminal:

* it carries the ``e2e`` or ``slurm`` mark, or uses a fixture that starts one (``SLOW_FIXTURES``), or
* the code it reaches says so (`SPAWNS`): the test function, the fixtures it uses and every function or
  class of tests/ they name, followed name by name.

What the collection cannot see, the runtime guard (`guard`) catches: in the fast lane a test whose
process starts ``python -m trainer``, ``app.supervise``, the plan scheduler, tmux or a SLURM daemon
fails with a message saying to mark it ``@pytest.mark.slow``. (A grandchild started by a ``segwatch``
subprocess is not seen by the guard; the collection's patterns cover those tests.)
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: fixtures that start trainers or a terminal themselves
SLOW_FIXTURES = {"tiny_ablation", "slurm_cluster", "slurm_env", "tmux"}
#: source that starts a trainer or a terminal (directly, or through `segwatch run/resume/plan`)
SPAWNS = re.compile(
    r'"-m",\s*"(?:trainer|app\.supervise|app\.plan\.scheduler)"'
    r"|\bpopen_trainer\(|\brun_trainer\(|\bTmuxDriver\b|\bstart_scheduler\("
    r'|"-m",\s*"app",\s*"(?:run|resume|plan)"|\bsegwatch\(\s*"(?:run|resume|plan)"'
    r"|\bstart_supervised\(|\bbench\W+(?:run_all|gpu_throughput)\.py"
)
#: modules whose start, in a child of the test process, means a trainer (or what starts one) runs
SPAWN_MODULES = {"trainer", "app.supervise", "app.plan.scheduler"}
SPAWN_PROGRAMS = {"tmux", "slurmctld", "slurmd", "slurmdbd", "munged", "sbatch", "srun", "salloc"}


@functools.lru_cache(maxsize=None)
def _own_file(path: str) -> bool:
    return Path(path).resolve().is_relative_to(TESTS)


def _own(obj) -> bool:
    try:
        return _own_file(inspect.getsourcefile(obj) or "")
    except TypeError:
        return False


def _names(code) -> set[str]:
    out = set(code.co_names) | set(code.co_freevars)
    for c in code.co_consts:
        if inspect.iscode(c):
            out |= _names(c)
    return out


_STEPS: dict = {}  # function or class of tests/ -> (its source, what it names): read once per session


def _step(obj) -> tuple[str, list]:
    """The source of one function or class of tests/ and the objects its code names (cached: the
    same fixtures and helpers are reached from hundreds of tests)."""
    if obj not in _STEPS:
        try:
            src = inspect.getsource(obj)
        except (OSError, TypeError):
            _STEPS[obj] = ("", [])
            return _STEPS[obj]
        funcs = [obj] if inspect.isfunction(obj) else [f for f in vars(obj).values() if inspect.isfunction(f)]
        named = [f.__globals__[n] for f in funcs for n in _names(f.__code__) if n in f.__globals__]
        _STEPS[obj] = (src, named)
    return _STEPS[obj]


def reached_source(roots) -> str:
    """The source of ``roots`` and of every function or class of tests/ they name, followed transitively."""
    seen: set[int] = set()
    parts: list[str] = []
    todo = list(roots)
    while todo:
        obj = inspect.unwrap(todo.pop()) if callable(todo[-1]) else todo.pop()
        if id(obj) in seen or not (inspect.isfunction(obj) or inspect.isclass(obj)) or not _own(obj):
            continue
        seen.add(id(obj))
        src, named = _step(obj)
        if src:
            parts.append(src)
            todo += named
    return "\n".join(parts)


def spawns_slow(item) -> str | None:
    """Why ``item`` belongs in the slow lane, or None."""
    for m in ("e2e", "slurm"):
        if item.get_closest_marker(m):
            return f"marked {m}"
    names = set(getattr(item, "fixturenames", ()))
    if names & SLOW_FIXTURES:
        return f"uses {sorted(names & SLOW_FIXTURES)[0]}"
    info = getattr(item, "_fixtureinfo", None)
    roots = [getattr(item, "function", None)]
    if info is not None:
        roots += [defs[-1].func for n, defs in info.name2fixturedefs.items() if defs]
    m = SPAWNS.search(reached_source([r for r in roots if r is not None]))
    return f"reaches {m.group(0)!r}" if m else None


def mark_slow(items) -> None:
    for item in items:
        if not item.get_closest_marker("slow") and spawns_slow(item):
            item.add_marker(pytest.mark.slow)


def group_for_xdist(items) -> None:
    """Keep what a shared fixture builds once in one pytest-xdist worker (``-n 2 --dist loadgroup``):
    the SLURM cluster (one per machine), the tiny ablation trained once per session, and each module
    whose tests share a module-scoped fixture of tests/. Every other test goes to whichever worker is free."""
    for item in items:
        if item.get_closest_marker("slurm"):
            group = "slurm"
        else:
            info = getattr(item, "_fixtureinfo", None)
            shared = {name for name, defs in (info.name2fixturedefs.items() if info else ())
                      if defs and defs[-1].scope in ("session", "package", "module") and _ours(defs[-1].func)}
            if "tiny_ablation" in shared:
                group = "tiny_ablation"
            elif shared:
                group = item.nodeid.split("::", 1)[0]
            else:
                continue
        item.add_marker(pytest.mark.xdist_group(group))


def _ours(func) -> bool:
    try:
        return Path(inspect.getsourcefile(func) or "").resolve().is_relative_to(TESTS)
    except TypeError:
        return False


def _spawn_of(args) -> str | None:
    """What ``args`` (a Popen argument) starts that belongs in the slow lane, or None."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = os.fsdecode(args).split()
    args = [os.fsdecode(a) for a in args]
    if args and os.path.basename(args[0]) in SPAWN_PROGRAMS:
        return os.path.basename(args[0])
    for a, b in zip(args, args[1:]):
        if a == "-m" and b in SPAWN_MODULES:
            return f"python -m {b}"
    return None


class SpawnInFastLane(RuntimeError):
    pass


def guard(request, monkeypatch):
    """Generator body of the autouse fixture: refuse, in an unmarked test, a child that belongs in the slow lane."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    seen: list[str] = []
    real = subprocess.Popen.__init__

    def guarded(self, args, *a, **kw):
        what = _spawn_of(args)
        if what:
            seen.append(what)
            self._child_created = False  # Popen.__del__ reads it
            raise SpawnInFastLane(f"{request.node.nodeid} starts {what} but is not marked slow: mark it "
                                  f"@pytest.mark.slow (or teach tests/lanes.py's SPAWNS to see it)")
        real(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield
    if seen:
        pytest.fail(f"{request.node.nodeid} starts {seen[0]} but is not marked slow: mark it "
                    f"@pytest.mark.slow (or teach tests/lanes.py's SPAWNS to see it)", pytrace=False)
