"""Charging rules: the two JSON shapes (`schema`) and the pure engine (`engine`).

    rules = validate_rules(raw_json_list)        # RuleError on bad input
    program = compile_rules(rules)
    result, memory = evaluate(program, RuleContext(...), memory)

See docs/charging-rules.md for what every mode, condition and action means.
"""

from chargebrain.core.rules.engine import (
    NO_RULES,
    PhaseValues,
    Program,
    RuleContext,
    RuleMemory,
    RuleResult,
    compile_rules,
    evaluate,
)
from chargebrain.core.rules.schema import (
    LegacyRule,
    Rule,
    RuleError,
    rules_to_json,
    validate_rules,
)

__all__ = ["NO_RULES", "LegacyRule", "PhaseValues", "Program", "Rule", "RuleContext",
           "RuleError", "RuleMemory", "RuleResult", "compile_rules", "evaluate",
           "rules_to_json", "validate_rules"]
