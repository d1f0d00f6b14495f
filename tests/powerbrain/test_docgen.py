"""docs/registers.md is generated from the register table and must match it."""

from __future__ import annotations

from pathlib import Path

from chargebrain.powerbrain import docgen
from chargebrain.powerbrain.registers import REGISTERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "registers.md"


def test_committed_registers_md_is_the_generated_text():
    assert DOC.read_text(encoding="utf-8") == docgen.render(), (
        "docs/registers.md is stale: python -m chargebrain.powerbrain.docgen > docs/registers.md")


def test_every_register_appears_in_the_document():
    text = docgen.render()
    for reg in REGISTERS:
        assert f"| {reg.address} | `{reg.name}` |" in text
