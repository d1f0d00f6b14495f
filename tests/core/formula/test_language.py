"""The formula language: precedence, every operator and function, names, errors with positions."""

from __future__ import annotations

import math

import pytest

from chargebrain.core.formula import (
    MAX_DEPTH,
    MAX_LENGTH,
    DictEnv,
    FormulaError,
    compile_formula,
    evaluate,
    is_number_text,
    parse,
)

ENV = DictEnv({"x": 3, "y": -2, "M1.current_l1": 15000, "date.hour": 11, "CM.limit": 20000,
               "GM.surplus.power_w": 4200, "current": 7000, "e2.power_w": 1500},
              params={7: 1234.5})


def ev(text: str, env: DictEnv = ENV) -> float:
    return evaluate(text, env)


# (formula, value): each row pins one precedence or associativity decision (docs/formulas.md)
PRECEDENCE = [
    ("1 + 2 * 3", 7),              # * before +
    ("(1 + 2) * 3", 9),
    ("2 * 3 ^ 2", 18),             # ^ before *
    ("2 ^ 3 ^ 2", 512),            # ^ is right-associative
    ("-2 ^ 2", 4),                 # unary minus binds tighter than ^
    ("2 ^ -1", 0.5),               # a unary operand on the right of ^
    ("-x * 2", -6),
    ("10 - 4 - 3", 3),             # - is left-associative
    ("64 / 4 / 2", 8),             # / is left-associative
    ("7 % 4 * 2", 6),              # % and * share a level, left to right
    ("1 + 2 < 4", 1),              # + before <
    ("1 < 2 == 2 < 3", 1),         # relations before equality
    ("3 == 3 & 1", 1),             # equality before &
    ("6 & 3 | 8", 10),             # & before |
    ("8 | 6 & 3", 10),
    ("1 | 0 && 0", 0),             # | before &&
    ("1 || 0 && 0", 1),            # && before ||
    ("0 && 1 || 1", 1),
    ("1 || 0 ? 5 : 6", 5),         # || before ?:
    ("0 ? 1 : 0 ? 2 : 3", 3),      # ?: is right-associative
    ("1 ? 0 ? 7 : 8 : 9", 8),      # a ternary in the middle
    ("!0 + 1", 2),                 # ! is unary: (!0) + 1
    ("!(0 + 1)", 0),
    ("!!5", 1),
    ("--3", 3),
    ("+3", 3),
    ("-(1 - 4)", 3),
    ("1 - -1", 2),
    ("2 * -x", -6),
    ("x > 2 ? x * 2 : y", 6),
]


@pytest.mark.parametrize(("text", "value"), PRECEDENCE)
def test_precedence_table(text: str, value: float) -> None:
    assert ev(text) == pytest.approx(value)


OPERATORS = [
    ("5 + 2", 7), ("5 - 2", 3), ("5 * 2", 10), ("5 / 2", 2.5), ("5 % 3", 2),
    ("-7 % 3", -1), ("7 % -3", 1), ("5.5 % 2", 1.5), ("10 ^ 2", 100), ("4 ^ 0.5", 2),
    ("6 & 3", 2), ("6 | 3", 7), ("6.9 & 3.9", 2), ("-1 & 5", 5),
    ("1 == 1", 1), ("1 == 2", 0), ("1 != 2", 1), ("1 != 1", 0),
    ("1 < 2", 1), ("2 < 1", 0), ("2 <= 2", 1), ("3 <= 2", 0),
    ("2 > 1", 1), ("1 > 2", 0), ("2 >= 2", 1), ("1 >= 2", 0),
    ("!0", 1), ("!3", 0), ("-x", -3),
    ("2 && 3", 1), ("2 && 0", 0), ("0 && 1", 0), ("0 || 0", 0), ("0 || -1", 1),
    ("1 ? 2 : 3", 2), ("0 ? 2 : 3", 3),
    ("0x10", 16), ("0XfF", 255), ("1.5", 1.5), (".5", 0.5), ("1.", 1), ("1e3", 1000),
    ("2.5E-1", 0.25),
]


@pytest.mark.parametrize(("text", "value"), OPERATORS)
def test_operators(text: str, value: float) -> None:
    assert ev(text) == pytest.approx(value)


FUNCTIONS = [
    ("min(3, 1, 2)", 1), ("max(3, 1, 2)", 3), ("min(4)", 4), ("max(-1, y)", -1),
    ("min(1, 2)", 1), ("max(1, 2)", 2),
    ("abs(-2)", 2), ("abs(2)", 2),
    ("clamp(5, 1, 3)", 3), ("clamp(0, 1, 3)", 1), ("clamp(2, 1, 3)", 2),
    ("round(2.5)", 3), ("round(-2.5)", -3), ("round(2.4)", 2), ("round(-2.4)", -2),
    ("round(10 * 1.26) / 10", 1.3), ("round(0.49999999999999994)", 0),
    ("sqrt(16)", 4), ("sqrt(0)", 0),
    ("exists(x)", 1), ("exists(nothing.here)", 0), ("exists(CM.LIMIT)", 1),
    ("param(7)", 1234.5), ("param(3 + 4)", 1234.5),
    ("MIN(1, 2)", 1), ("Max(1, 2)", 2),
]


@pytest.mark.parametrize(("text", "value"), FUNCTIONS)
def test_functions(text: str, value: float) -> None:
    assert ev(text) == pytest.approx(value)


def test_names_are_case_insensitive_and_dotted() -> None:
    assert ev("m1.CURRENT_L1") == 15000
    assert ev("GM.Surplus.Power_W") == 4200
    assert ev("cm.limit + CM.LIMIT") == 40000
    assert ev("current") == 7000
    f = compile_formula("M1.current_l1 < 16000 && date.hour >= 10 ? min(32000, CM.limit) : 6000")
    assert f.names == frozenset({"m1.current_l1", "date.hour", "cm.limit"})
    assert f.evaluate(ENV) == 20000
    assert f.evaluate(DictEnv({"m1.current_l1": 17000, "date.hour": 11, "cm.limit": 1})) == 6000
    assert compile_formula("exists(E7.soc)").names == frozenset({"e7.soc"})


def test_every_name_family_is_read_through_the_env() -> None:
    names = ["M1.current_l1", "E2.power_w", "CM.x", "CM._num_charging", "GM.surplus.power_w",
             "date.hour", "current", "V1.soc", "import_wh", "dt"]
    for i, name in enumerate(names):
        assert evaluate(f"{name} + 1", DictEnv({name: i})) == i + 1
        with pytest.raises(FormulaError) as err:
            evaluate(f"1 + {name}", DictEnv())
        assert err.value.pos == 4
        assert str(err.value) == f"formula: unknown name {name.lower()} at 4"


def test_the_untaken_branch_is_not_evaluated() -> None:
    assert ev("1 ? 5 : nothing") == 5
    assert ev("0 && nothing") == 0
    assert ev("1 || 1 / 0") == 1
    assert ev("x > 0 ? 1 : 1 / 0") == 1
    with pytest.raises(FormulaError, match="division by zero at 14"):
        ev("x < 0 ? 1 : 1 / 0")


def test_results_are_floats() -> None:
    for text in ("1 < 2", "!0", "exists(x)", "1 && 1", "6 & 3", "x"):
        assert type(ev(text)) is float


def test_constant_formulas_are_folded() -> None:
    assert compile_formula("2 * (3 + 4)").constant == 14
    assert compile_formula("2 * x").constant is None
    assert compile_formula("1 ? 5 : x").constant == 5
    assert compile_formula("param(1)").constant is None
    assert compile_formula("1 / 0").constant is None  # the error is kept for run time


ERRORS = [
    # text, message, position
    ("min(1,,2)", "unexpected ','", 6),
    ("", "unexpected end of formula", 0),
    ("   ", "unexpected end of formula", 3),
    ("1 +", "unexpected end of formula", 3),
    ("(1 + 2", "unexpected end of formula", 6),
    ("1 + 2)", "unexpected ')'", 5),
    ("1 = 2", "unexpected '='", 2),
    ("1 ? 2", "unexpected end of formula", 5),
    ("1 ? 2 , 3", "unexpected ','", 6),
    ("2 $ 3", "unexpected '$'", 2),
    ("1abc", "unexpected 'a'", 1),
    ("0x", "unexpected 'x'", 1),
    ("M1.", "unexpected '.'", 2),
    ("M1..x", "unexpected '.'", 2),
    ("1 2", "unexpected '2'", 2),
    ("x y", "unexpected 'y'", 2),
    ("foo(1)", "unknown function foo", 0),
    ("x + sin(1)", "unknown function sin", 4),
    ("clamp(1, 2)", "clamp() takes 3 arguments", 0),
    ("abs()", "abs() takes 1 argument", 0),
    ("abs(1, 2)", "abs() takes 1 argument", 0),
    ("min()", "min() takes at least 1 argument", 0),
    ("exists(1 + 2)", "exists() takes a name", 9),
    ("exists(3)", "exists() takes a name", 7),
    ("1e999", "number out of range", 0),
    ("x \x00", "unexpected character 0x0", 2),
    ("(1 ? 2 : 3", "unexpected end of formula", 10),
]


@pytest.mark.parametrize(("text", "message", "pos"), ERRORS)
def test_syntax_errors_have_positions(text: str, message: str, pos: int) -> None:
    with pytest.raises(FormulaError) as err:
        compile_formula(text)
    assert err.value.pos == pos
    assert err.value.problem == message
    assert str(err.value) == f"formula: {message} at {pos}"
    assert isinstance(err.value, ValueError)


RUNTIME_ERRORS = [
    ("x / 0", "division by zero", 2),
    ("x % (x - 3)", "division by zero", 2),
    ("10 ^ 400", "result out of range", 3),
    ("x ^ 1000", "result out of range", 2),
    ("1e300 * 1e300 * x", "result out of range", 6),
    ("1.7e308 + 1.7e308 + x", "result out of range", 8),
    ("0 ^ -1", "power is not defined here", 2),
    ("y ^ 0.5", "power is not defined here", 2),
    ("sqrt(y)", "sqrt of a negative number", 0),
    ("1.7976931348623157e308 | 2^970", "result out of range", 23),
    ("x * 1e308 & 1", "result out of range", 2),
    ("param(1)", "unknown parameter 1", 0),
    ("nothing", "unknown name nothing", 0),
    ("x + M9.power_w", "unknown name m9.power_w", 4),
    ("M9.power_w < 5", "unknown name m9.power_w", 0),
    ("min(x, nope)", "unknown name nope", 7),
]


@pytest.mark.parametrize(("text", "message", "pos"), RUNTIME_ERRORS)
def test_runtime_errors_have_positions(text: str, message: str, pos: int) -> None:
    formula = compile_formula(text)  # valid formulas: the error comes at run time
    with pytest.raises(FormulaError) as err:
        formula.evaluate(ENV)
    assert (err.value.problem, err.value.pos) == (message, pos)


def test_values_from_the_env_that_are_not_finite_are_refused() -> None:
    env = DictEnv({"a": math.inf, "b": math.nan})
    for text in ("a", "b", "a + 1", "b * 2", "-a", "abs(a)"):
        with pytest.raises(FormulaError):
            evaluate(text, env)
    assert evaluate("min(a, 5)", env) == 5


def test_env_values_that_are_not_numbers_are_formula_errors() -> None:
    env = DictEnv({"a": "text"})  # type: ignore[dict-item]
    for text in ("a + 1", "a < 1", "-a", "a", "min(a, 1)", "round(a)"):
        with pytest.raises(FormulaError):
            evaluate(text, env)


def test_length_and_depth_limits() -> None:
    ok = "1" + "+1" * ((MAX_LENGTH - 1) // 2)
    assert len(ok) <= MAX_LENGTH
    assert evaluate(ok, ENV) == (MAX_LENGTH - 1) // 2 + 1
    with pytest.raises(FormulaError, match=f"longer than {MAX_LENGTH} characters") as err:
        compile_formula("1" + " " * MAX_LENGTH)
    assert err.value.pos is None
    deep = "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    assert evaluate(deep, ENV) == 1
    too_deep = "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FormulaError, match="nested more than") as err:
        compile_formula(too_deep)
    assert err.value.pos == MAX_DEPTH
    with pytest.raises(FormulaError, match="nested more than"):
        compile_formula("-" * 200 + "1")
    with pytest.raises(FormulaError, match="nested more than"):
        compile_formula("2" + "^2" * 100)
    with pytest.raises(FormulaError, match="nested more than"):
        compile_formula("1?" * 60 + "1" + ":1" * 60)


def test_compiled_formulas_are_cached_by_text() -> None:
    assert compile_formula("x + 12345") is compile_formula("x + 12345")
    assert parse("1 + x")[0] == "bin"


def test_not_a_string_is_a_formula_error() -> None:
    for bad in (None, 5, b"1+1"):
        with pytest.raises(FormulaError):
            compile_formula(bad)  # type: ignore[arg-type]


def test_is_number_text() -> None:
    assert is_number_text("42") and is_number_text(" -1.5 ") and is_number_text("1e3")
    assert not is_number_text("nan") and not is_number_text("inf")
    assert not is_number_text("M1.power_w") and not is_number_text(5)


def test_reference_examples() -> None:
    """The examples of the reference page, with the values they describe."""
    env = DictEnv({"M1.current": 7000, "date.dayminute": 500, "date.weekday": 6,
                   "cm.var1": 1, "pb.input2": 0, "import_wh": 1000, "M1.power_w": 3600,
                   "dt": 10, "power_w": 2000})
    assert evaluate("M1.current >= 6500 ? M1.current : 0", env) == 7000
    assert evaluate("date.dayminute >= 480 ? 8000 : 0", env) == 8000
    assert evaluate("date.weekday == 5 || date.weekday == 6 ? 16000 : 0", env) == 16000
    assert evaluate("PB.input2 ? 6000 : 0", env) == 0
    assert evaluate("cm.var1 ? 6000 : 0", env) == 6000
    assert evaluate("16000 - M1.current", env) == 9000
    assert evaluate("import_wh + M1.power_w * dt / 3600", env) == 1010
    assert evaluate("(power_w * (20 - dt) + M1.power_w * dt) / 20", env) == 2800
