"""A small, safe arithmetic language for rule arguments that depend on the module path.

A rule can capture path segments in its ``name`` globs (``layers.{layer_id}.attn.wo``)
and compute initializer arguments from them with ``expr``::

    out_proj:
      type: TruncNormal
      name: ["layers.{layer_id}.attention.wo", "layers.{layer_id}.feed_forward.w2"]
      expr: {std: "0.02 / sqrt(2 * (layer_id + 1))"}

Expressions are parsed with :mod:`ast` and only numbers, captured names,
``+ - * / // % **``, parentheses and the functions in :data:`FUNCTIONS` are
allowed. Nothing is ever passed to ``eval``.

>>> evaluate("0.02 / sqrt(2 * (layer_id + 1))", {"layer_id": 1})
0.01
>>> try:
...     evaluate("__import__('os')", {})
... except ValueError as exc:
...     print(exc)
function '__import__' is not allowed; use one of: abs, exp, log, max, min, sqrt
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Mapping

__all__ = ["FUNCTIONS", "evaluate", "names_in"]

FUNCTIONS = {
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "max": max,
    "min": min,
    "sqrt": math.sqrt,
}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    # Float power: 10 ** 10 ** 10 overflows at once instead of building a huge integer,
    # and a negative base with a fractional exponent is an error, not a complex number.
    ast.Pow: math.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


MAX_LENGTH = 1000
"""The longest expression accepted (a formula, not a program)."""

MAX_DEPTH = 50
"""The deepest nesting accepted; deeper expressions are refused, never a ``RecursionError``."""


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> ast.Expression:
    if len(text) > MAX_LENGTH:
        raise _Refused(f"the expression is {len(text)} characters long; at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise _Refused(f"the expression is nested too deeply (at most {MAX_DEPTH} levels)") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise _Refused(f"the expression is nested too deeply (at most {MAX_DEPTH} levels)")
    return tree


def _depth(node: ast.AST) -> int:
    """Nesting depth, without recursion (so any tree the parser built can be measured)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(current))
    return deepest


def names_in(text: str) -> set[str]:
    """Variable names an expression uses (function names excluded).

    >>> sorted(names_in("0.02 / sqrt(2 * n_layer)"))
    ['n_layer']
    """
    tree = _parse(text)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}
    # Refuse forbidden constructs now, not only when a module first evaluates the text:
    # a dry run with every name bound; arithmetic problems depend on values, so they wait.
    try:
        _eval(tree.body, dict.fromkeys(names, 1))
    except _Refused:
        raise
    except (ValueError, ArithmeticError):
        pass
    return names


class _Refused(ValueError):
    """A construct the language does not allow, whatever the variables' values."""


def evaluate(text: str, variables: Mapping[str, float | int]) -> float:
    """Evaluate an arithmetic expression with the given variables; the result must be finite.

    >>> evaluate("1e200 * 1e200", {})
    Traceback (most recent call last):
    ...
    ValueError: the result inf is not a finite number
    """
    try:
        value = float(_eval(_parse(text).body, variables))
    except OverflowError:
        raise ValueError("the result overflows a float") from None
    if not math.isfinite(value):
        raise ValueError(f"the result {value} is not a finite number")
    return value


def _eval(node: ast.AST, variables: Mapping[str, float | int]) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(
        node.value, bool
    ):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ValueError(f"unknown name {node.id!r}; captured names here: {known}")
        value = variables[node.id]
        if not isinstance(value, (int, float)):
            raise ValueError(f"{node.id}={value!r} is not a number")
        return value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, variables), _eval(node.right, variables))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, variables))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        func = FUNCTIONS.get(node.func.id)
        if func is None:
            raise _Refused(
                f"function {node.func.id!r} is not allowed; use one of: {', '.join(sorted(FUNCTIONS))}"
            )
        args = [_eval(arg, variables) for arg in node.args]
        try:
            return func(*args)
        except TypeError as exc:  # max(), sqrt(1, 2): a config error, not a crash
            raise ValueError(f"{node.func.id}(): {exc}") from None
    if isinstance(node, ast.Call):
        raise _Refused(f"only plain calls of {', '.join(sorted(FUNCTIONS))} are allowed")
    raise _Refused(f"{type(node).__name__} is not allowed in an init expression")
