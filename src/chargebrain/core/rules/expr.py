"""The rule engine's one door to the formula language.

Rules only need `compile_formula(text)` → an object with `evaluate(env) -> float`, and the
error type `FormulaError`. They come from `chargebrain.core.formula` (the formula engine).
Until that package exists on this branch, a small interim evaluator below serves the same
contract for simple numeric expressions (numbers, dotted names, `+ - * /`, comparisons,
`&& || !`, parentheses, `min`/`max`/`abs`/`param`), so rules with formulas can be tested; it is
dropped as soon as the formula engine is merged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Protocol


class FormulaEnvLike(Protocol):
    """What a formula reads: names (lower-case, dotted) and rule parameters."""

    def lookup(self, name: str) -> float | None: ...

    def param(self, rule_id: int) -> float | None: ...


class CompiledFormula(Protocol):
    def evaluate(self, env: FormulaEnvLike) -> float: ...


try:  # the real formula engine, once merged
    from chargebrain.core.formula import (  # type: ignore[import-not-found,unused-ignore]
        FormulaError,
        compile_formula,
    )
except ImportError:  # interim evaluator (see the module docstring)

    class FormulaError(ValueError):  # type: ignore[no-redef]
        """A formula that cannot be parsed or evaluated (message with the position)."""

    _TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?)|([A-Za-z_][A-Za-z0-9_.]*)"
                        r"|(&&|\|\||==|!=|<=|>=|[-+*/()<>!,?:]))")
    _Node = Callable[[FormulaEnvLike], float]
    _FUNCS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}

    class _Parser:
        def __init__(self, text: str) -> None:
            self.tokens: list[tuple[str, str, int]] = []
            pos = 0
            text = text.rstrip()
            while pos < len(text):
                m = _TOKEN.match(text, pos)
                if m is None or m.end() == pos:
                    raise FormulaError(f"formula: unexpected {text[pos]!r} at {pos}")
                kind = "num" if m.group(1) else "name" if m.group(2) else "op"
                self.tokens.append((kind, m.group(m.lastindex or 0), m.start(m.lastindex or 0)))
                pos = m.end()
            self.i = 0
            self.end = len(text)

        def peek(self) -> str | None:
            return self.tokens[self.i][1] if self.i < len(self.tokens) else None

        def take(self, value: str | None = None) -> tuple[str, str, int]:
            if self.i >= len(self.tokens):
                raise FormulaError(f"formula: unexpected end at {self.end}")
            tok = self.tokens[self.i]
            if value is not None and tok[1] != value:
                raise FormulaError(f"formula: unexpected {tok[1]!r} at {tok[2]}")
            self.i += 1
            return tok

        def expr(self) -> _Node:
            cond = self.binary(0)
            if self.peek() == "?":
                self.take()
                yes = self.expr()
                self.take(":")
                no = self.expr()
                return lambda env: yes(env) if cond(env) != 0 else no(env)
            return cond

        _LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), ("==", "!=", "<", "<=", ">",
                                                                   ">="), ("+", "-"), ("*", "/"))

        def binary(self, level: int) -> _Node:
            if level == len(self._LEVELS):
                return self.unary()
            left = self.binary(level + 1)
            while self.peek() in self._LEVELS[level]:
                op = self.take()[1]
                right = self.binary(level + 1)
                left = _combine(op, left, right)
            return left

        def unary(self) -> _Node:
            if self.peek() == "-":
                self.take()
                inner = self.unary()
                return lambda env: -inner(env)
            if self.peek() == "!":
                self.take()
                inner = self.unary()
                return lambda env: 0.0 if inner(env) != 0 else 1.0
            return self.primary()

        def primary(self) -> _Node:
            kind, value, pos = self.take()
            if kind == "num":
                number = float(value)
                return lambda env: number
            if value == "(":
                inner = self.expr()
                self.take(")")
                return inner
            if kind != "name":
                raise FormulaError(f"formula: unexpected {value!r} at {pos}")
            name = value.lower()
            if self.peek() == "(":
                self.take()
                args = [self.expr()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
                self.take(")")
                return _call(name, args, pos)
            def lookup(env: FormulaEnvLike) -> float:
                got = env.lookup(name)
                if got is None:
                    raise FormulaError(f"formula: unknown name {name!r}")
                return float(got)
            return lookup

    def _combine(op: str, a: _Node, b: _Node) -> _Node:
        def div(env: FormulaEnvLike) -> float:
            d = b(env)
            if d == 0:
                raise FormulaError("formula: division by zero")
            return a(env) / d
        table: dict[str, _Node] = {
            "+": lambda env: a(env) + b(env), "-": lambda env: a(env) - b(env),
            "*": lambda env: a(env) * b(env), "/": div,
            "==": lambda env: float(a(env) == b(env)), "!=": lambda env: float(a(env) != b(env)),
            "<": lambda env: float(a(env) < b(env)), "<=": lambda env: float(a(env) <= b(env)),
            ">": lambda env: float(a(env) > b(env)), ">=": lambda env: float(a(env) >= b(env)),
            "&&": lambda env: float(a(env) != 0 and b(env) != 0),
            "||": lambda env: float(a(env) != 0 or b(env) != 0),
        }
        return table[op]

    def _call(name: str, args: list[_Node], pos: int) -> _Node:
        if name == "param" and len(args) == 1:
            def param(env: FormulaEnvLike) -> float:
                got = env.param(int(args[0](env)))
                if got is None:
                    raise FormulaError("formula: unknown parameter")
                return float(got)
            return param
        func = _FUNCS.get(name)
        if func is None:
            raise FormulaError(f"formula: unknown function {name!r} at {pos}")
        return lambda env: float(func(*(f(env) for f in args)))

    class _Compiled:
        def __init__(self, node: _Node) -> None:
            self._node = node

        def evaluate(self, env: FormulaEnvLike) -> float:
            value = self._node(env)
            if not math.isfinite(value):
                raise FormulaError("formula: result is not a finite number")
            return value

    def compile_formula(text: str) -> _Compiled:  # type: ignore[misc]
        """Parse `text` once; FormulaError with the position when it is not a formula."""
        parser = _Parser(text)
        if not parser.tokens:
            raise FormulaError("formula: empty")
        node = parser.expr()
        if parser.i != len(parser.tokens):
            _, value, pos = parser.tokens[parser.i]
            raise FormulaError(f"formula: unexpected {value!r} at {pos}")
        return _Compiled(node)


__all__ = ["CompiledFormula", "FormulaEnvLike", "FormulaError", "compile_formula"]
