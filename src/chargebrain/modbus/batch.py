"""Request batching: many register reads of one unit become few Modbus requests.

Spans that overlap or touch are merged into one run; a run longer than the per-request cap
(125 registers for functions 3 and 4) is cut into pieces of at most the cap. Spans with a gap
between them are never merged: the registers in a gap may not exist on the device, and reading
them would fail the whole request (exception 2).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_READ_REGISTERS = 125  # what one read (function 3 or 4) may return


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """`count` consecutive registers from `address`."""

    address: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.address <= 0xFFFF or self.count < 1 \
                or self.address + self.count > 0x10000:
            raise ValueError(f"bad register span {self.address}+{self.count}")

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.count


def plan_reads(spans: list[Span], max_count: int = MAX_READ_REGISTERS) -> list[Span]:
    """The requests that read every register of `spans`: merged runs, each ≤ `max_count`."""
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    runs: list[Span] = []
    for span in sorted(spans):
        if runs and span.address <= runs[-1].end:
            last = runs[-1]
            runs[-1] = Span(last.address, max(last.end, span.end) - last.address)
        else:
            runs.append(span)
    requests = []
    for run in runs:
        for start in range(run.address, run.end, max_count):
            requests.append(Span(start, min(max_count, run.end - start)))
    return requests


def split_answers(spans: list[Span], requests: list[Span],
                  answers: list[list[int]]) -> list[list[int]]:
    """The registers of each span (in the order of `spans`) from the answers to `requests`."""
    words: dict[int, int] = {}
    for request, answer in zip(requests, answers, strict=True):
        if len(answer) != request.count:
            raise ValueError(f"answer to {request.address}+{request.count} has "
                             f"{len(answer)} registers")
        words.update(zip(range(request.address, request.end), answer, strict=True))
    return [[words[a] for a in range(span.address, span.end)] for span in spans]


def cover_gaps(spans: list[Span], max_count: int = MAX_READ_REGISTERS) -> list[Span]:
    """Windows that read `spans` together with the gaps between them, each ≤ `max_count`
    registers (a span longer than that keeps its own window; `plan_reads` cuts it).

    For devices whose unused registers read fine (`modbus_allow_gaps` in a meter definition):
    fewer requests than `plan_reads` alone would make."""
    windows: list[Span] = []
    for span in sorted(spans):
        if windows and max(windows[-1].end, span.end) - windows[-1].address <= max_count:
            last = windows[-1]
            windows[-1] = Span(last.address, max(last.end, span.end) - last.address)
        elif windows and span.end <= windows[-1].end:
            continue  # inside a window already
        else:
            windows.append(span)
    return windows
