"""The formula language: parse a formula once, evaluate it many times against an environment.

Pure: no I/O, no clock, no imports from devices/control/api. The grammar, the precedence table
and the names are described in docs/formulas.md; in short (tightest first)::

    primary   number (12, 1.5, .5, 1e3, 0x1F), name (M1.current_l1), f(args), (expr)
    unary     -x  !x  +x                 (so -2^2 == (-2)^2 == 4)
    power     x ^ y                      right-associative: 2^3^2 == 2^9
    mul       * / %                      % is C's fmod (the sign of the dividend)
    add       + -
    relation  < <= > >=
    equality  == !=
    bit and   &                          on the integer parts
    bit or    |
    and       &&                         short-circuit, 1 or 0
    or        ||                         short-circuit, 1 or 0
    ternary   c ? a : b                  right-associative

Values are floats; non-zero is true. Names are case-insensitive (stored lowercased). Functions:
`min`/`max` (one or more arguments), `abs`, `clamp(x, lo, hi)`, `round` (half away from zero),
`sqrt`, `exists(name)` (1 when the environment knows the name), `param(id)`.

A formula is parsed into a tree of closures (no Python `eval`/`exec`/`compile` of user text):
constant parts are folded, comparisons of a name with a constant are one closure. The text is
at most `MAX_LENGTH` characters and `MAX_DEPTH` levels deep, so parsing and evaluation are
bounded. Every error is a `FormulaError` with the 0-based character position where it was
found ("formula: unexpected ',' at 12"); a result or intermediate result that is not a finite
number is an error too (`10^400`), so a formula never yields inf or NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Protocol

MAX_LENGTH = 256  # characters; the same as cmvars.MAX_FORMULA_LEN
MAX_DEPTH = 48  # nesting of parentheses, unary operators, powers, ternaries and calls
CACHE_SIZE = 1024
_FLOAT_MAX = 1.7976931348623157e308

Fn = Callable[["FormulaEnv"], float]


class FormulaError(ValueError):
    """A formula that cannot be parsed or evaluated; `pos` is the 0-based character position
    (None when the error has no place, e.g. a formula that is too long)."""

    def __init__(self, problem: str, pos: int | None = None) -> None:
        self.problem = problem
        self.pos = pos
        text = f"formula: {problem}" if pos is None else f"formula: {problem} at {pos}"
        super().__init__(text)


class FormulaEnv(Protocol):
    """Where a formula's names come from. `name` is lowercased and dotted (`m1.current_l1`,
    `cm.x`, `gm.surplus.power_w`, `date.hour`, `current`); None means unknown."""

    def lookup(self, name: str) -> float | None: ...

    def param(self, rule_id: int) -> float | None: ...


class DictEnv:
    """A FormulaEnv over a dict of names (matched case-insensitively) and rule parameters."""

    __slots__ = ("_params", "_values", "lookup")

    def __init__(self, values: Mapping[str, float] | None = None,
                 params: Mapping[int, float] | None = None) -> None:
        self._values = {k.lower(): v for k, v in (values or {}).items()}
        self._params = dict(params or {})
        self.lookup = self._values.get  # the dict's own get: one C call per name

    def param(self, rule_id: int) -> float | None:
        return self._params.get(rule_id)


# -- tokens -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<hex>0[xX][0-9a-fA-F]+)
  | (?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%^&|<>!?:(),])
""", re.VERBOSE)
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_.]")

NUM, NAME, OP, END = "num", "name", "op", "end"


def _describe(text: str, pos: int) -> str:
    if pos >= len(text):
        return "end of formula"
    ch = text[pos]
    return f"'{ch}'" if ch.isprintable() else f"character {ord(ch):#x}"


def tokenize(text: str) -> list[tuple[str, object, int]]:
    """(kind, value, position) tokens ending with END; FormulaError on a bad character."""
    tokens: list[tuple[str, object, int]] = []
    pos = 0
    end = len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(f"unexpected {_describe(text, pos)}", pos)
        kind = m.lastgroup
        value = m.group()
        if kind == "ws":
            pos = m.end()
            continue
        if kind in ("hex", "num"):
            if m.end() < end and _IDENT_CHAR.match(text, m.end()):
                raise FormulaError(f"unexpected {_describe(text, m.end())}", m.end())
            number = float(int(value, 16)) if kind == "hex" else float(value)
            if not math.isfinite(number):
                raise FormulaError("number out of range", pos)
            tokens.append((NUM, number, pos))
        elif kind == "name":
            if m.end() < end and text[m.end()] == ".":
                raise FormulaError(f"unexpected {_describe(text, m.end())}", m.end())
            tokens.append((NAME, value.lower(), pos))
        else:
            tokens.append((OP, value, pos))
        pos = m.end()
    tokens.append((END, None, end))
    return tokens


# -- syntax tree --------------------------------------------------------------------------------
# Nodes are tuples: ("num", value), ("name", name), ("un", op, x), ("bin", op, a, b),
# ("and"/"or", a, b), ("tern", c, a, b), ("call", func, args, names); each with its position
# last. They are what the parser makes and what the compiler turns into closures.

# operator → (precedence, right-associative); unary operators bind tighter than all of them
# (`_Parser.unary`), the ternary looser (`_Parser.expr`)
_BINARY = {
    "||": (1, False), "&&": (2, False), "|": (3, False), "&": (4, False),
    "==": (5, False), "!=": (5, False),
    "<": (6, False), "<=": (6, False), ">": (6, False), ">=": (6, False),
    "+": (7, False), "-": (7, False),
    "*": (8, False), "/": (8, False), "%": (8, False),
    "^": (10, True),
}
ARITY = {"min": (1, None), "max": (1, None), "abs": (1, 1), "clamp": (3, 3), "round": (1, 1),
         "sqrt": (1, 1), "exists": (1, 1), "param": (1, 1)}


class _Parser:
    """Precedence climbing over the token list, with a nesting limit."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, object, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, object, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, tok: tuple[str, object, int]) -> FormulaError:
        return FormulaError(f"unexpected {_describe(self.text, tok[2])}", tok[2])

    def expect(self, op: str) -> None:
        tok = self.take()
        if tok[0] != OP or tok[1] != op:
            raise self.fail(tok)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"nested more than {MAX_DEPTH} levels deep", pos)

    def parse(self) -> tuple:
        node = self.expr()
        tok = self.peek()
        if tok[0] != END:
            raise self.fail(tok)
        return node

    def expr(self) -> tuple:
        """ternary := binary(1) [ '?' expr ':' expr ]"""
        cond = self.binary(1)
        tok = self.peek()
        if tok[0] == OP and tok[1] == "?":
            self.take()
            self.enter(tok[2])
            a = self.expr()
            self.expect(":")
            b = self.expr()
            self.depth -= 1
            return ("tern", cond, a, b, tok[2])
        return cond

    def binary(self, min_prec: int) -> tuple:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok[0] != OP:
                return left
            info = _BINARY.get(tok[1])  # type: ignore[arg-type]
            if info is None or info[0] < min_prec:
                return left
            prec, right_assoc = info
            self.take()
            if right_assoc:
                self.enter(tok[2])
                right = self.binary(prec)
                self.depth -= 1
            else:
                right = self.binary(prec + 1)
            op = tok[1]
            if op == "&&":
                left = ("and", left, right, tok[2])
            elif op == "||":
                left = ("or", left, right, tok[2])
            else:
                left = ("bin", op, left, right, tok[2])

    def unary(self) -> tuple:
        """unary := ('-'|'!'|'+') unary | primary — the operand of ^ is a unary, so -2^2 is
        (-2)^2, and 2^-1 works."""
        tok = self.peek()
        if tok[0] == OP and tok[1] in ("-", "!", "+"):
            self.take()
            self.enter(tok[2])
            operand = self.unary()
            self.depth -= 1
            return ("un", tok[1], operand, tok[2])
        return self.primary()

    def primary(self) -> tuple:
        tok = self.take()
        kind, value, pos = tok
        if kind == NUM:
            return ("num", value, pos)
        if kind == NAME:
            nxt = self.peek()
            if nxt[0] == OP and nxt[1] == "(":
                return self.call(str(value), pos)
            return ("name", value, pos)
        if kind == OP and value == "(":
            self.enter(pos)
            node = self.expr()
            self.expect(")")
            self.depth -= 1
            return node
        raise self.fail(tok)

    def call(self, func: str, pos: int) -> tuple:
        if func not in ARITY:
            raise FormulaError(f"unknown function {func[:32]}", pos)
        self.take()  # (
        self.enter(pos)
        args: list[tuple] = []
        tok = self.peek()
        if not (tok[0] == OP and tok[1] == ")"):
            while True:
                args.append(self.expr())
                tok = self.take()
                if tok[0] == OP and tok[1] == ",":
                    continue
                if tok[0] == OP and tok[1] == ")":
                    break
                raise self.fail(tok)
        else:
            self.take()
        self.depth -= 1
        lo, hi = ARITY[func]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            plural = "" if lo == 1 else "s"
            raise FormulaError(f"{func}() takes {want} argument{plural}", pos)
        if func == "exists" and args[0][0] != "name":
            raise FormulaError("exists() takes a name", args[0][-1])
        return ("call", func, tuple(args), pos)


def parse(text: str) -> tuple:
    """The syntax tree of `text` (see the node list above); FormulaError when invalid."""
    if not isinstance(text, str):
        raise FormulaError("must be a string")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"longer than {MAX_LENGTH} characters")
    return _Parser(text).parse()


# -- compiling into closures ---------------------------------------------------------------------

def _unknown(name: str, pos: int) -> FormulaError:
    return FormulaError(f"unknown name {name}", pos)


def _range_error(pos: int) -> FormulaError:
    return FormulaError("result out of range", pos)


def _round(x: float) -> float:
    """Half away from zero (C's round)."""
    if x >= 0:
        r = math.floor(x)
        return r + 1.0 if x - r >= 0.5 else float(r)
    return -_round(-x)


def _const(value: float) -> Fn:
    return lambda env: value


def _name(key: str, pos: int) -> Fn:
    def get(env: FormulaEnv) -> float:
        v = env.lookup(key)
        if v is None:
            raise _unknown(key, pos)
        return v
    return get


def _compare_name_const(op: str, key: str, c: float, pos: int) -> Fn:
    """`name OP constant`, the most common rule pattern, as one closure."""
    if op == "<":
        def f(env: FormulaEnv) -> float:
            v = env.lookup(key)
            if v is None:
                raise _unknown(key, pos)
            return v < c
    elif op == "<=":
        def f(env: FormulaEnv) -> float:
            v = env.lookup(key)
            if v is None:
                raise _unknown(key, pos)
            return v <= c
    elif op == ">":
        def f(env: FormulaEnv) -> float:
            v = env.lookup(key)
            if v is None:
                raise _unknown(key, pos)
            return v > c
    elif op == ">=":
        def f(env: FormulaEnv) -> float:
            v = env.lookup(key)
            if v is None:
                raise _unknown(key, pos)
            return v >= c
    elif op == "==":
        def f(env: FormulaEnv) -> float:
            v = env.lookup(key)
            if v is None:
                raise _unknown(key, pos)
            return v == c
    else:
        def f(env: FormulaEnv) -> float:
            v = env.lookup(key)
            if v is None:
                raise _unknown(key, pos)
            return v != c
    return f  # type: ignore[return-value]


def _compare(op: str, a: Fn, b: Fn) -> Fn:
    if op == "<":
        return lambda env: a(env) < b(env)
    if op == "<=":
        return lambda env: a(env) <= b(env)
    if op == ">":
        return lambda env: a(env) > b(env)
    if op == ">=":
        return lambda env: a(env) >= b(env)
    if op == "==":
        return lambda env: a(env) == b(env)
    return lambda env: a(env) != b(env)


def _arith(op: str, a: Fn, b: Fn, pos: int) -> Fn:
    """+ - * / % ^ with a finite result or FormulaError (`r - r == 0` is false for inf/NaN)."""
    if op == "+":
        def f(env: FormulaEnv) -> float:
            r = a(env) + b(env)
            if r - r == 0:
                return r
            raise _range_error(pos)
    elif op == "-":
        def f(env: FormulaEnv) -> float:
            r = a(env) - b(env)
            if r - r == 0:
                return r
            raise _range_error(pos)
    elif op == "*":
        def f(env: FormulaEnv) -> float:
            r = a(env) * b(env)
            if r - r == 0:
                return r
            raise _range_error(pos)
    elif op == "/":
        def f(env: FormulaEnv) -> float:
            x = a(env)
            d = b(env)
            if d == 0:
                raise FormulaError("division by zero", pos)
            r = x / d
            if r - r == 0:
                return r
            raise _range_error(pos)
    elif op == "%":
        def f(env: FormulaEnv) -> float:
            x = a(env)
            d = b(env)
            if d == 0:
                raise FormulaError("division by zero", pos)
            try:
                r = math.fmod(x, d)
            except ValueError:
                raise _range_error(pos) from None
            if r - r == 0:
                return r
            raise _range_error(pos)
    else:  # ^
        def f(env: FormulaEnv) -> float:
            x = a(env)
            y = b(env)
            try:
                r = math.pow(x, y)
            except OverflowError:
                raise _range_error(pos) from None
            except ValueError:  # 0^-1, (-8)^(1/3)
                raise FormulaError("power is not defined here", pos) from None
            if r - r == 0:
                return r
            raise _range_error(pos)
    return f  # type: ignore[return-value]


def _bitwise(op: str, a: Fn, b: Fn, pos: int) -> Fn:
    """& | on the integer parts; the result must fit a float again (the OR of two numbers
    near the float maximum may not)."""
    def to_int(x: float) -> int:
        try:
            return int(x)
        except (ValueError, OverflowError):
            raise _range_error(pos) from None

    def to_float(n: int) -> float:
        try:
            return float(n)
        except OverflowError:
            raise _range_error(pos) from None
    if op == "&":
        return lambda env: to_float(to_int(a(env)) & to_int(b(env)))
    return lambda env: to_float(to_int(a(env)) | to_int(b(env)))


def _call(func: str, args: tuple[Fn, ...], raw: tuple[tuple, ...], pos: int) -> Fn:
    if func == "exists":
        key = raw[0][1]
        return lambda env: env.lookup(key) is not None
    if func in ("min", "max"):
        pick = min if func == "min" else max
        if len(args) == 1:
            return args[0]
        if len(args) == 2:
            a, b = args
            return lambda env: pick(a(env), b(env))
        return lambda env: pick([f(env) for f in args])
    x = args[0]
    if func == "abs":
        return lambda env: abs(x(env))
    if func == "round":
        return lambda env: _round(x(env))
    if func == "sqrt":
        def sqrt(env: FormulaEnv) -> float:
            v = x(env)
            if v < 0:
                raise FormulaError("sqrt of a negative number", pos)
            return math.sqrt(v)
        return sqrt
    if func == "clamp":
        lo, hi = args[1], args[2]

        def clamp(env: FormulaEnv) -> float:
            v = x(env)
            low = lo(env)
            high = hi(env)
            return low if v < low else high if v > high else v
        return clamp
    # param(id)

    def param(env: FormulaEnv) -> float:
        raw_id = x(env)
        try:
            rule_id = int(raw_id)
        except (ValueError, OverflowError):
            raise FormulaError("param() needs a rule id", pos) from None
        v = env.param(rule_id)
        if v is None:
            raise FormulaError(f"unknown parameter {rule_id}", pos)
        return v
    return param


class _NoEnv:
    """The environment of constant folding: a name here means the part is not constant."""

    def lookup(self, name: str) -> float | None:
        raise LookupError(name)

    def param(self, rule_id: int) -> float | None:
        raise LookupError(rule_id)


_NO_ENV = _NoEnv()


def _compile(node: tuple, names: set[str]) -> tuple[Fn, float | None]:
    """(closure, its constant value or None)."""
    kind = node[0]
    if kind == "num":
        return _const(node[1]), node[1]
    if kind == "name":
        names.add(node[1])
        return _name(node[1], node[2]), None
    if kind == "un":
        _, op, operand, pos = node
        x, cx = _compile(operand, names)
        if op == "-":
            fn: Fn = lambda env: -x(env)  # noqa: E731
        elif op == "!":
            fn = lambda env: not x(env)  # noqa: E731
        else:
            fn = x
        return _fold(fn, cx is not None)
    if kind in ("and", "or"):
        _, left, right, pos = node
        a, ca = _compile(left, names)
        b, cb = _compile(right, names)
        if kind == "and":
            fn = lambda env: True if a(env) and b(env) else False  # noqa: E731, SIM210
        else:
            fn = lambda env: True if a(env) or b(env) else False  # noqa: E731, SIM210
        return _fold(fn, ca is not None and cb is not None)
    if kind == "tern":
        _, cond, left, right, pos = node
        c, cc = _compile(cond, names)
        a, ca = _compile(left, names)
        b, cb = _compile(right, names)
        if cc is not None:  # a constant condition picks its branch at compile time
            return (a, ca) if cc else (b, cb)
        return (lambda env: a(env) if c(env) else b(env)), None
    if kind == "bin":
        _, op, left, right, pos = node
        a, ca = _compile(left, names)
        b, cb = _compile(right, names)
        const = ca is not None and cb is not None
        if op in ("<", "<=", ">", ">=", "==", "!="):
            if left[0] == "name" and cb is not None:
                return _compare_name_const(op, left[1], cb, left[2]), None
            return _fold(_compare(op, a, b), const)
        if op in ("&", "|"):
            return _fold(_bitwise(op, a, b, pos), const)
        return _fold(_arith(op, a, b, pos), const)
    # call
    _, func, raw_args, pos = node
    compiled = [_compile(arg, names) for arg in raw_args]
    if func == "exists":
        names.add(raw_args[0][1])
        return _call(func, (), raw_args, pos), None
    fns = tuple(f for f, _ in compiled)
    const = func != "param" and all(c is not None for _, c in compiled)
    return _fold(_call(func, fns, raw_args, pos), const)


def _fold(fn: Fn, const: bool) -> tuple[Fn, float | None]:
    """A part whose inputs are all constants becomes a constant, unless it fails: then the
    error is kept for run time (`x ? 1/0 : 2` is a valid formula)."""
    if not const:
        return fn, None
    try:
        value = fn(_NO_ENV)  # type: ignore[arg-type]
    except (FormulaError, LookupError, ArithmeticError, ValueError, TypeError):
        return fn, None
    value = float(value)
    return _const(value), value


class Formula:
    """A compiled formula: `evaluate(env)` → float, or FormulaError."""

    __slots__ = ("_fn", "constant", "names", "text")

    def __init__(self, text: str, names: frozenset[str], fn: Fn,
                 constant: float | None) -> None:
        self.text = text
        self.names = names  # the lowercased dotted names it reads
        self._fn = fn
        self.constant = constant  # the value when the formula reads nothing

    def evaluate(self, env: FormulaEnv) -> float:
        try:
            r = self._fn(env)
            if -_FLOAT_MAX <= r <= _FLOAT_MAX:
                return float(r)
        except FormulaError:
            raise
        except RecursionError:
            raise FormulaError("nested too deeply") from None
        except (ArithmeticError, ValueError, TypeError) as err:
            # an environment that handed back something that is not a number
            raise FormulaError(f"cannot evaluate ({type(err).__name__})") from None
        raise FormulaError("result is not a finite number")

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"


@lru_cache(maxsize=CACHE_SIZE)
def _compile_cached(text: str) -> Formula:
    tree = parse(text)
    names: set[str] = set()
    fn, constant = _compile(tree, names)
    return Formula(text, frozenset(names), fn, constant)


def compile_formula(text: str) -> Formula:
    """The compiled form of `text` (cached by text); FormulaError with the position when it is
    not a valid formula."""
    if not isinstance(text, str):
        raise FormulaError("must be a string")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"longer than {MAX_LENGTH} characters")
    return _compile_cached(text)


def is_number_text(text: object) -> bool:
    """True when `text` is a plain finite number (`42`, `-1.5`, `1e3`), not a formula."""
    if not isinstance(text, str):
        return False
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def evaluate(text: str, env: FormulaEnv) -> float:
    """compile_formula(text).evaluate(env)."""
    return compile_formula(text).evaluate(env)


__all__ = ["ARITY", "MAX_DEPTH", "MAX_LENGTH", "DictEnv", "Formula", "FormulaEnv",
           "FormulaError", "compile_formula", "evaluate", "is_number_text", "parse"]
