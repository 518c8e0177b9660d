"""Figures of how the house is kept (issue 14's closing note): the largest functions, the method
counts of the classes that grew, and how many places each fact lives in.

    python -m tools.house_figures [--root DIR] [--top N]

``--root`` measures another checkout (e.g. ``git worktree add /tmp/before main``). Pure ``ast``:
nothing is imported from the measured tree.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

CLASSES = ("RunState", "Components", "Trainer")
ALIASES = ("trainer/live.py", "trainer/config.py", "trainer/safe_yaml.py", "trainer/fmeasure.py",
           "trainer/data/classes.py")
FACTS = {
    "ended statuses": {"finished", "early_stop", "stopped", "crashed"},
    "control commands": {"set", "pause", "resume", "stop", "checkpoint"},
}


def _sources(root: Path) -> list[Path]:
    return sorted(p for pkg in ("app", "trainer") for p in (root / pkg).rglob("*.py"))


def source_trees(root: Path) -> list[tuple[str, ast.Module]]:
    """(path relative to ``root``, parsed module) of every file of app/ and trainer/."""
    return list(_trees(root))


def _trees(root: Path):
    for p in _sources(root):
        yield p.relative_to(root).as_posix(), ast.parse(p.read_text(), str(p))


def largest_functions(trees, top: int) -> list[tuple[int, str]]:
    found = []
    for rel, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)[:top]


def _classes(trees) -> dict[str, tuple[str, ast.ClassDef]]:
    return {node.name: (rel, node) for rel, tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def method_counts(trees) -> dict[str, str]:
    """Methods defined in the class body, and with those of its bases defined in app/ or trainer/."""
    classes, counts = _classes(trees), {}
    for name in CLASSES:
        if name not in classes:
            counts[name] = "absent"
            continue
        rel, node = classes[name]
        own = sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in node.body)
        bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in classes]
        inherited = sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for base in bases for b in classes[base][1].body)
        counts[name] = (f"{own} methods" + (f" (+{inherited} from {', '.join(bases)})" if bases else "")
                        + f", {node.end_lineno - node.lineno + 1} lines ({rel})")
    return counts


def written_outside(trees, cls: str = "RunState") -> list[str]:
    """``x.attr = ...`` (x not ``self``) in app/ outside the class's module, for an attribute its
    ``__init__`` sets: places other than the class that write its state."""
    classes = _classes(trees)
    if cls not in classes:
        return []
    home, node = classes[cls]
    attrs = {t.attr for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign))
             for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
             if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    hits = []
    for rel, tree in trees:
        if rel == home or not rel.startswith("app/"):
            continue
        for n in ast.walk(tree):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                for e in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(e, ast.Attribute) and e.attr in attrs and not (isinstance(e.value, ast.Name) and e.value.id == "self"):
                        hits.append(f"{rel}:{n.lineno} .{e.attr}")
    return hits


def _live_keys(trees) -> set[str]:
    for rel, tree in trees:
        if rel == "trainer/core/live.py":
            return {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and getattr(n.func, "id", "") == "_live" and n.args and isinstance(n.args[0], ast.Constant)}
    return set()


def fact_places(root: Path, trees) -> dict[str, int]:
    places = {fact: 0 for fact in FACTS}
    live = _live_keys(trees)
    by_name = 0
    for rel, tree in trees:
        for node in ast.walk(tree):
            # a literal holding the whole fact (tests/test_one_table.py's rule): a tuple, list or set of
            # its strings, or a mapping onto them (END_STATUS: the end reasons -> the statuses)
            elts = (node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set))
                    else node.values if isinstance(node, ast.Dict) else [])
            if elts and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elts):
                values = {e.value for e in elts}
                for fact, want in FACTS.items():
                    places[fact] += values in (want, want | {"skipped"})
            # `k == "dropout"` / `k in ("gamma", ...)`: a live key dispatched by its name in an if-chain
            if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name)
                    and isinstance(node.ops[0], (ast.Eq, ast.In)) and rel.startswith("trainer/")):
                right = node.comparators[0]
                consts = [right] if isinstance(right, ast.Constant) else getattr(right, "elts", [])
                if consts and all(isinstance(c, ast.Constant) and c.value in live for c in consts):
                    by_name += 1
    places["live keys dispatched by name (trainer/ if-chains)"] = by_name
    places["alias modules of the shared core"] = sum((root / a).exists() for a in ALIASES)
    return places


def big_files(trees, limit: int = 400) -> list[tuple[int, str]]:
    return sorted(((max(getattr(n, "end_lineno", 0) or 0 for n in ast.walk(t)), rel) for rel, t in trees
                   if max(getattr(n, "end_lineno", 0) or 0 for n in ast.walk(t)) > limit), reverse=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args(argv)
    trees = list(_trees(a.root))
    print(f"house figures of {a.root}")
    print(f"largest functions (lines), top {a.top}:")
    for n, where in largest_functions(trees, a.top):
        print(f"  {n:4d}  {where}")
    print("method counts:")
    for name, text in method_counts(trees).items():
        print(f"  {name}: {text}")
    outside = written_outside(trees)
    print(f"RunState attributes written outside RunState: {len(outside)}" + (f" ({', '.join(outside)})" if outside else ""))
    print("places each fact lives:")
    for fact, n in fact_places(a.root, trees).items():
        print(f"  {fact}: {n}")
    print("files over 400 lines (app/, trainer/):")
    for n, rel in big_files(trees) or [(0, "none")]:
        print(f"  {n:4d}  {rel}" if n else "  none")


if __name__ == "__main__":
    main()
