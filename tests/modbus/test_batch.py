"""Read batching: merged runs under the cap, never across a gap, answers split back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargebrain.modbus.batch import (
    MAX_READ_REGISTERS,
    Span,
    cover_gaps,
    plan_reads,
    split_answers,
)

spans = st.lists(st.builds(Span, st.integers(0, 2000), st.integers(1, 300)), min_size=1,
                 max_size=12)


def registers_of(items: list[Span]) -> set[int]:
    return {a for s in items for a in range(s.address, s.end)}


@given(spans, st.integers(1, MAX_READ_REGISTERS))
def test_requests_cover_exactly_the_spans_under_the_cap(items, cap):
    requests = plan_reads(items, cap)
    assert all(1 <= r.count <= cap for r in requests)
    assert registers_of(requests) == registers_of(items)  # nothing missed, no gap read
    assert sum(r.count for r in requests) == len(registers_of(requests))  # no overlap


@given(spans)
def test_answers_are_split_back_per_span(items):
    requests = plan_reads(items)
    answers = [[a % 65536 for a in range(r.address, r.end)] for r in requests]
    out = split_answers(items, requests, answers)
    assert out == [[a % 65536 for a in range(s.address, s.end)] for s in items]


def test_adjacent_and_overlapping_spans_merge_gaps_do_not():
    assert plan_reads([Span(10, 5), Span(15, 5), Span(12, 2)]) == [Span(10, 10)]
    assert plan_reads([Span(10, 5), Span(16, 5)]) == [Span(10, 5), Span(16, 5)]
    assert plan_reads([Span(0, 300)]) == [Span(0, 125), Span(125, 125), Span(250, 50)]


def test_bad_spans_and_answers_are_refused():
    with pytest.raises(ValueError):
        Span(65535, 2)
    with pytest.raises(ValueError):
        Span(0, 0)
    with pytest.raises(ValueError):
        plan_reads([Span(0, 1)], 0)
    with pytest.raises(ValueError, match="has 1 registers"):
        split_answers([Span(0, 2)], [Span(0, 2)], [[1]])


def test_cover_gaps_reads_gaps_within_the_cap_only():
    spans = [Span(0, 2), Span(10, 2), Span(0x34, 2), Span(0x48, 4)]
    assert cover_gaps(spans, 60) == [Span(0, 0x36), Span(0x48, 4)]
    assert cover_gaps(spans, 12) == [Span(0, 12), Span(0x34, 2), Span(0x48, 4)]
    assert cover_gaps([Span(5, 200)], 125) == [Span(5, 200)]  # plan_reads cuts it
    assert cover_gaps([Span(0, 10), Span(2, 3)], 125) == [Span(0, 10)]
