"""A scenario's result, the table `python -m reliability` prints, and its JSON file."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
# The columns, and how long each scenario took.
COLUMNS = (
    "scenario",
    "load held",
    "faults injected",
    "inputs tried",
    "customers checked",
    "lost",
    "duplicated",
    "result",
    "duration",
)


@dataclass
class Result:
    scenario: str
    load: str = "-"
    faults: str = "-"
    inputs: int = 0  # webhooks, requests or changes tried
    checked: int = 0  # customers compared with the store (orders: figures["orders_checked"])
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    def expect_timing(self, ok: bool, problem: str, asserted: bool) -> None:
        if not ok:
            (self.problems if asserted else self.notes).append(problem)

    def row(self) -> tuple[str, ...]:
        return (
            self.scenario,
            self.load,
            self.faults,
            str(self.inputs),
            str(self.checked) if self.checked else "-",
            str(self.lost),
            str(self.duplicated),
            "pass" if self.passed else "FAIL",
            f"{self.seconds:.0f} s",
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def table(results: list[Result], wall_s: float | None = None) -> str:
    """One row per scenario; the last gives the run's wall time (scenarios that ran side by side
    overlap, so it is less than the sum of their durations) or, without it, that sum."""
    total = sum(r.seconds for r in results) if wall_s is None else wall_s
    last = (
        "total (wall clock)" if wall_s is not None else "total",
        *[""] * (len(COLUMNS) - 2),
        f"{total:.0f} s",
    )
    rows = [COLUMNS, *(r.row() for r in results), last]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def results_path() -> Path:
    return RESULTS / f"reliability-{time.strftime('%Y%m%d-%H%M%S')}.json"


def write(
    results: list[Result], command: str, short: bool, path: Path | None = None, wall_s: float | None = None
) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = path or results_path()
    document = {
        "command": command,
        "short": short,
        "passed": all(r.passed for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),  # the scenarios' durations summed
        "wall_seconds": None if wall_s is None else round(wall_s, 1),  # side by side ones overlap
        "results": [r.to_json() for r in results],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path
