"""Fuzzed formulas: random token strings and random valid trees never raise anything but
FormulaError, and valid trees evaluate to what an independent reference interpreter says."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.core.formula import (
    MAX_DEPTH,
    MAX_LENGTH,
    DictEnv,
    FormulaError,
    compile_formula,
)

NAMES = {"x": 3.0, "y": -2.5, "m1.current_l1": 15000.0, "cm.big": 1e300, "z": 0.0}
ENV = DictEnv(NAMES, params={1: 42.0})
FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

TOKENS = ["1", "0", "2.5", ".5", "1e3", "1e308", "1.7976931348623157e308", "0x1F", "x", "y",
          "z", "M1.current_l1",
          "CM.big", "nope", "+", "-", "*", "/", "%", "^", "&", "|", "&&", "||", "!", "==",
          "!=", "<", "<=", ">", ">=", "?", ":", "(", ")", ",", "min", "max", "abs", "clamp",
          "round", "sqrt", "exists", "param", "foo", ".", "=", " ", "$", "e"]


def check(text: str) -> None:
    """Compiling and evaluating raise FormulaError or give a finite float."""
    try:
        formula = compile_formula(text)
    except FormulaError as err:
        assert err.pos is None or 0 <= err.pos <= len(text)
        assert str(err).startswith("formula: ")
        return
    try:
        value = formula.evaluate(ENV)
    except FormulaError as err:
        assert err.pos is None or 0 <= err.pos <= len(text)
        return
    assert type(value) is float and math.isfinite(value)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_strings(tokens: list[str]) -> None:
    check("".join(tokens))
    check(" ".join(tokens))


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    check(text)


# -- random valid trees -------------------------------------------------------------------------

BINARY_PREC = {"||": 1, "&&": 2, "|": 3, "&": 4, "==": 5, "!=": 5, "<": 6, "<=": 6, ">": 6,
               ">=": 6, "+": 7, "-": 7, "*": 8, "/": 8, "%": 8, "^": 10}
UNARY_PREC, TERNARY_PREC, ATOM_PREC = 9, 0, 11

leaves = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 0.5, 3.0, 10.0, 1e3, 1e300, 1.7976931348623157e308,
                     2.0 ** 970]).map(lambda v: ("num", v)),
    st.sampled_from([*sorted(NAMES), "nope"]).map(lambda n: ("name", n)),
)
small = st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0]).map(lambda v: ("num", v))


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("bin"), st.sampled_from(sorted(BINARY_PREC)), children, children),
        st.tuples(st.just("un"), st.sampled_from(["-", "!", "+"]), children),
        st.tuples(st.just("tern"), children, children, children),
        st.tuples(st.just("call"), st.sampled_from(["min", "max"]),
                  st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.tuples(st.just("call"), st.sampled_from(["abs", "round", "sqrt"]),
                  st.tuples(children)),
        st.tuples(st.just("call"), st.just("clamp"), st.tuples(children, children, children)),
        st.tuples(st.just("call"), st.just("exists"), st.tuples(leaves.filter(
            lambda n: n[0] == "name"))),
    )


def _binary_heavy(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(st.just("bin"), st.sampled_from(sorted(BINARY_PREC)), children, children)


trees = st.recursive(leaves, _extend, max_leaves=16)
# small operands and mostly binary operators: precedence mistakes show up as wrong values
operator_trees = st.recursive(st.one_of(small, st.just(("name", "x"))),
                              lambda c: st.one_of(_binary_heavy(c), _extend(c)), max_leaves=10)


def prec(node: tuple) -> int:
    if node[0] == "bin":
        return BINARY_PREC[node[1]]
    if node[0] == "un":
        return UNARY_PREC
    if node[0] == "tern":
        return TERNARY_PREC
    return ATOM_PREC


def render(node: tuple, minimal: bool) -> str:
    """Text of a tree: fully parenthesised, or with only the parentheses precedence needs."""
    def wrap(child: tuple, need: bool) -> str:
        text = render(child, minimal)
        return f"({text})" if need or (not minimal and child[0] in ("bin", "un", "tern")) \
            else text
    kind = node[0]
    if kind == "num":
        return repr(node[1])
    if kind == "name":
        return node[1].upper() if len(node[1]) > 3 else node[1]
    if kind == "un":
        return node[1] + wrap(node[2], prec(node[2]) not in (UNARY_PREC, ATOM_PREC))
    if kind == "tern":
        return (f"{wrap(node[1], prec(node[1]) <= TERNARY_PREC)} ? "
                f"{wrap(node[2], False)} : {wrap(node[3], False)}")
    if kind == "call":
        return f"{node[1]}({', '.join(wrap(a, False) for a in node[2])})"
    op, left, right = node[1], node[2], node[3]
    p = BINARY_PREC[op]
    if op == "^":  # right-associative; its operands are unary expressions
        need_left = prec(left) < UNARY_PREC or prec(left) == p
        need_right = prec(right) < UNARY_PREC
    else:
        need_left = prec(left) < p
        need_right = prec(right) <= p
    return f"{wrap(left, need_left)} {op} {wrap(right, need_right)}"


class RefError(Exception):
    pass


def finite(v: float) -> float:
    if not math.isfinite(v):
        raise RefError
    return v


def ref(node: tuple) -> float:
    """An independent interpreter of the documented semantics (docs/formulas.md)."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        if node[1] not in NAMES:
            raise RefError
        return NAMES[node[1]]
    if kind == "un":
        v = ref(node[2])
        return -v if node[1] == "-" else float(v == 0) if node[1] == "!" else v
    if kind == "tern":
        return ref(node[2]) if ref(node[1]) != 0 else ref(node[3])
    if kind == "call":
        func, args = node[1], node[2]
        if func == "exists":
            return float(args[0][1] in NAMES)
        vals = [ref(a) for a in args]
        if func == "min":
            return min(vals)
        if func == "max":
            return max(vals)
        if func == "abs":
            return abs(vals[0])
        if func == "round":
            whole = math.floor(abs(vals[0]))
            away = whole + 1 if abs(vals[0]) - whole >= 0.5 else whole
            return math.copysign(away, vals[0])
        if func == "sqrt":
            if vals[0] < 0:
                raise RefError
            return math.sqrt(vals[0])
        x, lo, hi = vals
        return lo if x < lo else hi if x > hi else x
    op = node[1]
    if op == "&&":
        return float(ref(node[2]) != 0 and ref(node[3]) != 0)
    if op == "||":
        return float(ref(node[2]) != 0 or ref(node[3]) != 0)
    a = ref(node[2])
    b = ref(node[3])
    if op in ("&", "|"):
        try:
            return float(int(a) & int(b) if op == "&" else int(a) | int(b))
        except OverflowError:  # the OR of two numbers near the float maximum
            raise RefError from None
    compare = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}
    if op in compare:
        return float(compare[op])
    if op in ("/", "%") and b == 0:
        raise RefError
    try:
        v = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
             "%": lambda: math.fmod(a, b), "^": lambda: math.pow(a, b)}[op]()
    except (OverflowError, ValueError):
        raise RefError from None
    return finite(v)


@FUZZ
@given(st.one_of(trees, operator_trees), st.booleans())
def test_random_trees_match_the_reference(tree: tuple, minimal: bool) -> None:
    text = render(tree, minimal)
    try:
        formula = compile_formula(text)
    except FormulaError as err:
        # only the budget may refuse a well-formed tree
        assert len(text) > MAX_LENGTH or "nested" in err.problem, (text, err)
        return
    try:
        want: float | None = finite(ref(tree))
    except RefError:
        want = None
    try:
        got: float | None = formula.evaluate(ENV)
    except FormulaError:
        got = None
    assert (want is None) == (got is None), (text, want, got)
    if want is None or got is None:
        return
    assert got == want or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (text, want, got)


def test_a_tree_at_the_depth_limit_compiles() -> None:
    tree: tuple = ("name", "x")
    for _ in range(MAX_DEPTH):
        tree = ("un", "-", tree)
    assert compile_formula(render(tree, True)).evaluate(ENV) == 3


# -- precedence: flat operator chains against a shunting-yard reference --------------------------

CHAIN_OPS = sorted(BINARY_PREC)


def shunting_yard(operands: list[tuple], ops: list[str]) -> tuple:
    """The tree of `o0 op0 o1 op1 o2 …` by the documented precedence and associativity."""
    out: list[tuple] = [operands[0]]
    stack: list[str] = []

    def reduce() -> None:
        op = stack.pop()
        right = out.pop()
        left = out.pop()
        out.append(("bin", op, left, right))
    for op, operand in zip(ops, operands[1:], strict=True):
        p = BINARY_PREC[op]
        while stack and (BINARY_PREC[stack[-1]] > p
                         or (BINARY_PREC[stack[-1]] == p and op != "^")):
            reduce()
        stack.append(op)
        out.append(operand)
    while stack:
        reduce()
    return out[0]


operand = st.one_of(small, st.just(("name", "x")), st.tuples(
    st.just("un"), st.sampled_from(["-", "!"]), small))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(CHAIN_OPS), operand), min_size=1, max_size=6),
       operand)
def test_operator_chains_follow_the_precedence_table(chain: list[tuple[str, tuple]],
                                                      first: tuple) -> None:
    operands = [first, *(o for _, o in chain)]
    ops = [op for op, _ in chain]
    text = render(operands[0], True) + "".join(
        f" {op} {render(o, True)}" for op, o in zip(ops, operands[1:], strict=True))
    try:
        want: float | None = finite(ref(shunting_yard(operands, ops)))
    except RefError:
        want = None
    try:
        got: float | None = compile_formula(text).evaluate(ENV)
    except FormulaError:
        got = None
    assert (want is None) == (got is None), (text, want, got)
    if want is not None and got is not None:
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (text, want, got)


# -- any float from the environment ---------------------------------------------------------------

env_values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


class _RandomEnv:
    def __init__(self, values: dict[str, float | None]) -> None:
        self.values = values

    def lookup(self, name: str) -> float | None:
        return self.values.get(name)

    def param(self, rule_id: int) -> float | None:
        return self.values.get("x")


@FUZZ
@given(st.one_of(trees, operator_trees), st.dictionaries(st.sampled_from(sorted(NAMES)),
                                                         env_values))
def test_any_float_from_the_env_gives_a_finite_result_or_a_formula_error(
        tree: tuple, values: dict[str, float | None]) -> None:
    text = render(tree, True)
    try:
        formula = compile_formula(text)
    except FormulaError:
        return
    try:
        value = formula.evaluate(_RandomEnv(values))
    except FormulaError:
        return
    assert type(value) is float and math.isfinite(value)
