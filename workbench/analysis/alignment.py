"""What putting strategies on common dates costs each of them, said out loud.

Compared strategies are measured on the days all of them have finite values. A treatment that
starts late or has gaps silently shortens the control's record, and the control's headline
can change a lot (an IR of 2.27 on its own 60 days can be 0.23 on 45 shared days). For each
strategy this module counts the days it has, the days alignment drops and why:

* ``late_start`` — its days before the common window, which another strategy starts later;
* ``early_end`` — its days after the window, which another strategy ends earlier;
* ``missing_days`` — its days inside the window that another strategy lacks;
* ``non_finite`` — its own rows with a missing or non-finite return, bench or cost (never used).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import polars as pl

from workbench.metrics import usable_rows

__all__ = ["AlignmentReport", "alignment_report"]


@dataclass(frozen=True)
class AlignmentReport:
    """One strategy's days before and after alignment (JSON-ready through ``to_dict``)."""

    strategy: str
    own_days: int
    own_start: str | None
    own_end: str | None
    aligned_days: int
    late_start: int
    early_end: int
    missing_days: int
    non_finite: int
    dropped_share: float
    causes: tuple[str, ...]

    @property
    def dropped(self) -> int:
        """Own usable days that alignment leaves out."""
        return self.late_start + self.early_end + self.missing_days

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["causes"] = list(self.causes)
        out["dropped"] = self.dropped
        return out


def _days(frame: pl.DataFrame) -> set[date]:
    return set(frame.filter(usable_rows())["datetime"].to_list())


def alignment_report(raw: dict[str, pl.DataFrame], common: list[date]) -> list[AlignmentReport]:
    """Per strategy (``raw``: name → its archived rows), what alignment to ``common`` drops and why."""
    own = {name: _days(frame) for name, frame in raw.items()}
    start, end = common[0], common[-1]
    shared = set(common)
    reports = []
    for name, days in own.items():
        others = {k: v for k, v in own.items() if k != name}
        before = sorted(d for d in days if d < start)
        after = sorted(d for d in days if d > end)
        gaps = sorted(d for d in days if start <= d <= end and d not in shared)
        causes = []
        if before:
            late = [k for k, v in others.items() if v and min(v) == start]
            causes.append(f"{len(before)} day(s) before {start}: {', '.join(late)} start(s) then")
        if after:
            early = [k for k, v in others.items() if v and max(v) == end]
            causes.append(f"{len(after)} day(s) after {end}: {', '.join(early)} end(s) then")
        if gaps:
            lacking = {k: sum(d not in v for d in gaps) for k, v in others.items()}
            causes.append(
                f"{len(gaps)} day(s) inside the window that others lack: "
                + ", ".join(f"{k} ({n})" for k, n in lacking.items() if n)
            )
        non_finite = raw[name].height - len(days)
        if non_finite:
            causes.append(f"{non_finite} own row(s) with a missing or non-finite return, bench or cost")
        dropped = len(before) + len(after) + len(gaps)
        reports.append(
            AlignmentReport(
                strategy=name,
                own_days=len(days),
                own_start=min(days).isoformat() if days else None,
                own_end=max(days).isoformat() if days else None,
                aligned_days=len(days & shared),
                late_start=len(before),
                early_end=len(after),
                missing_days=len(gaps),
                non_finite=non_finite,
                dropped_share=dropped / len(days) if days else 0.0,
                causes=tuple(causes),
            )
        )
    return reports
