"""Gate expressions: when does the next run of a serial plan start?

A tiny, safe expression language over the result of the run that just ended, parsed with
``ast`` and walked by hand (never ``eval``)::

    best_val_f < success_threshold                       (the default: the plan's Plan B)
    best_val_f < 0.71 or status == "crashed"
    status == "finished" and final_val_f < success_threshold - 0.02
    not (best_val_f >= acceptable_threshold)

Allowed: numbers, strings, true/false, the names in :data:`NAMES`, comparisons (``< <= > >=
== !=``, chained too), ``and`` / ``or`` / ``not``, ``+ - * /`` on numbers, unary minus and
parentheses. Anything else (calls, attributes, subscripts, lambdas, ...) is refused when the
gate is parsed, before any run starts.

A comparison with a value that is not known (e.g. ``best_val_f`` of a run that crashed before
its first validation) does not hold; the explanation says which value was missing.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping

from trainer.core.safe_yaml import is_number

DEFAULT_GATE = "best_val_f < success_threshold"

#: name -> what it means (shown in errors and in docs/run-directory.md)
NAMES = {
    "best_val_f": "best val F of the run (the organisers' per-image F; what best.pt holds)",
    "best_epoch": "epoch of the best val F",
    "final_val_f": "val F of the last completed epoch",
    "final_train_f": "train F of the last completed epoch",
    "pooled_f": "pooled val F at the best epoch",
    "epochs": "epochs completed",
    "total_epochs": "epochs the run was set to train",
    "train_minutes": "minutes spent in training epochs (sum of epoch times)",
    "status": 'how the run ended: "finished", "early_stop", "stopped" or "crashed"',
    "success_threshold": "the health rules' late-phase success threshold (thresholds.late_success)",
    "acceptable_threshold": "the health rules' acceptable threshold (thresholds.late_acceptable)",
}

ALLOWED = ("numbers, strings, true/false, the names " + ", ".join(NAMES)
           + ", comparisons (< <= > >= == !=), and/or/not, + - * / and parentheses")

_CMP = {ast.Lt: ("<", operator.lt), ast.LtE: ("<=", operator.le), ast.Gt: (">", operator.gt),
        ast.GtE: (">=", operator.ge), ast.Eq: ("==", operator.eq), ast.NotEq: ("!=", operator.ne)}
_BIN = {ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", operator.mul),
        ast.Div: ("/", operator.truediv)}
_CONST_NAMES = {"true": True, "false": False, "True": True, "False": False}


class GateError(ValueError):
    """A gate expression that cannot be used; the message is one line."""


class _Unknown(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class GateResult:
    holds: bool
    why: str  # e.g. "best_val_f 0.0622 < success_threshold 0.73: holds"
    values: dict  # the names the expression used, with their values


class Gate:
    """A parsed, checked gate expression."""

    def __init__(self, text: str, where: str = "--gate"):
        self.text = str(text).strip()
        self.where = where
        if len(self.text) > 500:
            raise GateError(f"{where}: {len(self.text)} characters; allowed: at most 500")
        if not self.text:
            raise GateError(f"{where}: empty expression; e.g. '{DEFAULT_GATE}' (allowed: {ALLOWED})")
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as e:
            col = f" at column {e.offset}" if e.offset else ""
            raise GateError(f"{where} {self.text!r}: invalid syntax{col}; allowed: {ALLOWED}") from None
        self.tree = tree.body
        self.names: list[str] = []
        self._check(self.tree)

    def __repr__(self) -> str:
        return f"Gate({self.text!r})"

    # --- checking --------------------------------------------------------------------------
    def _refuse(self, node: ast.AST, what: str) -> GateError:
        seg = ast.get_source_segment(self.text, node) or type(node).__name__
        return GateError(f"{self.where} {self.text!r}: {what} {seg!r} is not allowed; allowed: {ALLOWED}")

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                raise self._refuse(node, "the operator in")
            self._check(node.operand)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _CMP:
                    raise self._refuse(node, "the comparison")
            self._check(node.left)
            for c in node.comparators:
                self._check(c)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BIN:
                raise self._refuse(node, "the operator in")
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.Constant):
            v = node.value
            if not (isinstance(v, (int, float, str)) or v is None) or (isinstance(v, float) and not math.isfinite(v)):
                raise self._refuse(node, "the constant")
        elif isinstance(node, ast.Name):
            if node.id in _CONST_NAMES:
                return
            if node.id not in NAMES:
                near = difflib.get_close_matches(node.id, list(NAMES), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise GateError(f"{self.where} {self.text!r}: unknown name '{node.id}'{hint} "
                                f"(names: {', '.join(NAMES)})")
            if node.id not in self.names:
                self.names.append(node.id)
        else:
            raise self._refuse(node, "the expression")

    # --- evaluating ------------------------------------------------------------------------
    def evaluate(self, values: Mapping[str, Any]) -> GateResult:
        """Evaluate against a run's result; unknown (None) values make it not hold."""
        used = {n: values.get(n) for n in self.names}
        try:
            holds = bool(self._eval(self.tree, used))
        except _Unknown as u:
            return GateResult(False, f"{self.render(used)}: cannot be decided ({u.name} is not known); "
                              "the gate does not hold", used)
        except (TypeError, ZeroDivisionError) as e:
            return GateResult(False, f"{self.render(used)}: cannot be decided ({e}); the gate does not hold", used)
        return GateResult(holds, f"{self.render(used)}: {'holds' if holds else 'does not hold'}", used)

    def _eval(self, node: ast.AST, v: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._eval(x, v) for x in node.values)
            return any(self._eval(x, v) for x in node.values)
        if isinstance(node, ast.UnaryOp):
            x = self._eval(node.operand, v)
            if isinstance(node.op, ast.Not):
                return not x
            _num(x)
            return -x if isinstance(node.op, ast.USub) else x
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, v)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, v)
                fn = _CMP[type(op)][1]
                if type(op) not in (ast.Eq, ast.NotEq):
                    _num(left), _num(right)
                if not fn(left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left, v), self._eval(node.right, v)
            _num(a), _num(b)
            return _BIN[type(node.op)][1](a, b)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in _CONST_NAMES:
                return _CONST_NAMES[node.id]
            x = v.get(node.id)
            if x is None or (isinstance(x, float) and not math.isfinite(x)):
                raise _Unknown(node.id)
            return x
        raise TypeError(f"unexpected {type(node).__name__}")  # _check refused it already

    def render(self, values: Mapping[str, Any]) -> str:
        """The expression with each name followed by its value: 'best_val_f 0.0622 < success_threshold 0.73'."""
        out = self.text
        for n in sorted(self.names, key=len, reverse=True):
            out = _replace_name(out, n, f"{n} {fmt(values.get(n))}")
        return out


def _num(x: Any) -> None:
    if not is_number(x):
        raise TypeError(f"{x!r} is not a number")


def _replace_name(text: str, name: str, repl: str) -> str:
    """Replace whole-word occurrences of ``name`` outside string literals."""
    out, i, quote = [], 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == quote:
                quote = None
            i += 1
            continue
        if ch in "\"'":
            quote = ch
            out.append(ch)
            i += 1
            continue
        if text.startswith(name, i) and (i == 0 or not _word(text[i - 1])) \
                and (i + len(name) == len(text) or not _word(text[i + len(name)])):
            out.append(repl)
            i += len(name)
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def fmt(x: Any) -> str:
    if x is None:
        return "unknown"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return (f"{x:.4f}".rstrip("0").rstrip(".") or "0") if abs(x) < 1000 else f"{x:.1f}"
    if isinstance(x, str):
        return f'"{x}"'
    return str(x)
