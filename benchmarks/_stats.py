"""Small statistics and reporting helpers shared by the benchmarks.

Every benchmark reports *figures*: one measured value with its unit and,
where the project has one, a target. :func:`print_figures` renders them as a
table (rich when it is installed, plain text otherwise) and marks each missed
target, so a run that misses a target still exits 0 but cannot be misread.

    from benchmarks._stats import Figure, summarize, print_figures

    s = summarize(samples_ms)
    print_figures("restart", [
        Figure("crash -> running p50", s.p50, "ms", target=200),
        Figure("crash -> running p95", s.p95, "ms"),
    ])
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TextIO

__all__ = [
    "Figure",
    "Summary",
    "figures_json",
    "percentile",
    "print_figures",
    "summarize",
]


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation between ranks.

    Matches ``numpy.percentile(values, p)`` (its default "linear" method), so
    p50 is the median. Raises ``ValueError`` on an empty input or a bad ``p``.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no samples: measure at least one")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be between 0 and 100 (got {p})")
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Order statistics of one series of samples, in the samples' unit."""

    n: int
    min: float
    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    stdev: float


def summarize(values: Sequence[float]) -> Summary:
    """Summarize ``values``; raises ``ValueError`` when there are none."""
    if not values:
        raise ValueError("summarize() needs at least one sample")
    return Summary(
        n=len(values),
        min=min(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=max(values),
        mean=statistics.fmean(values),
        stdev=statistics.stdev(values) if len(values) > 1 else 0.0,
    )


@dataclass(frozen=True)
class Figure:
    """One reported value, optionally with a target it should meet.

    ``value=None`` means "not measured" (skipped, or the run failed; say why
    in ``note``). ``better="lower"`` means the target is a ceiling
    (``value <= target``); ``"higher"`` makes it a floor.
    """

    label: str
    value: float | None
    unit: str = ""
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"
    note: str = ""

    @property
    def met(self) -> bool | None:
        """True/False against the target; None without a target or a value."""
        if self.target is None or self.value is None:
            return None
        if self.better == "lower":
            return self.value <= self.target
        return self.value >= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return ""
        sign = "<=" if self.better == "lower" else ">="
        return f"{sign} {_number(self.target)} {self.unit}".rstrip()

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "MISS", None: ""}[self.met]


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _value_text(fig: Figure) -> str:
    if fig.value is None:
        return "n/a"
    return f"{_number(fig.value)} {fig.unit}".rstrip()


def print_figures(
    title: str, figures: Sequence[Figure], *, file: TextIO | None = None, plain: bool = False
) -> None:
    """Print ``figures`` as a table with a target and a verdict column.

    Uses rich when it is importable and ``plain`` is false; the plain form is
    fixed-width text that pastes cleanly into a Markdown code block.
    """
    out = file or sys.stdout
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        _print_plain(title, figures, out)
        return
    table = Table(title=title, title_justify="left")
    for column, justify in (("figure", "left"), ("value", "right"), ("target", "right"),
                            ("", "left"), ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for fig in figures:
        verdict = {True: "[green]ok[/]", False: "[bold red]MISS[/]", None: ""}[fig.met]
        table.add_row(fig.label, _value_text(fig), fig.target_text, verdict, fig.note)
    # Off a terminal rich assumes 80 columns; a log or a pipe can take a wide table.
    width = None if out.isatty() else 160
    Console(file=out, width=width, soft_wrap=False).print(table)


def _print_plain(title: str, figures: Sequence[Figure], out: TextIO) -> None:
    rows = [("figure", "value", "target", "", "note")]
    rows += [(f.label, _value_text(f), f.target_text, f.verdict, f.note) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(title, file=out)
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]),
                 row[2].rjust(widths[2]), row[3].ljust(widths[3]), row[4]]
        print("  ".join(cells).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


def figures_json(figures: Sequence[Figure]) -> str:
    """The figures as a JSON array (for CI or the README), with ``met`` filled in."""
    return json.dumps([{**asdict(f), "met": f.met} for f in figures], indent=2)


def report(
    title: str,
    figures: Sequence[Figure],
    *,
    setup: str,
    load_before: tuple[float, float, float],
    problems: Sequence[str],
    errors: Sequence[str],
    plain: bool,
    json_path: Path | None,
) -> int:
    """The common end of a benchmark: machine and load, the figures, leaks, errors; the exit status."""
    print(f"python {platform.python_version()}, {platform.system()} {platform.release()}, "
          f"{os.cpu_count()} CPUs; {setup}")
    # Other load on the machine starves children and skews every figure: show it.
    print("load average (1, 5, 15 min) before: {:.1f} {:.1f} {:.1f}, after: {:.1f} {:.1f} {:.1f}"
          .format(*load_before, *os.getloadavg()))
    print_figures(title, figures, plain=plain)
    for line in problems:
        print(f"LEAK/WARNING {line}")
    for line in errors:
        print(f"ERROR {line}", file=sys.stderr)
    if json_path is not None:
        json_path.write_text(figures_json(figures))
    return 1 if errors else 0
