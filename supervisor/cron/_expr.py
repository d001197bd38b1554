"""Cron expressions: validation and "next fire time", in a named time zone.

The parsing and the calendar walk are cronsim's. We chose cronsim over
croniter because it reproduces Debian cron, daylight-saving time included: a
daily 01:30 job runs once on the fall-back day (croniter 6+ runs it twice), and
a job in the hour skipped at spring-forward runs right after the jump, as Debian
cron does. Its step syntax (``59/15``) has also stayed stable, where croniter
6.3/7.0 changed it. This module is the small interface the rest of actorsup
uses, so the library stays swappable.

A sixth, leading field holds seconds. cronsim would walk such expressions in
real time, without the Debian DST rules, so that a daily ``0 30 1 * * *`` job
would run twice on the fall-back day. We walk the five Debian fields with
cronsim instead, and add the seconds on top of each matching minute: the DST
behaviour is then the same with or without seconds.
"""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..exceptions import SupervisorError

__all__ = ["CronExpressionError", "CronSchedule", "resolve_timezone", "validate_expression"]

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_FORMS = "minute hour day-of-month month day-of-week"
_PROBE = datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC"))


class CronExpressionError(SupervisorError, ValueError):
    """A cron expression or time zone is invalid; ``str()`` says what is wrong.

    The message names the problem only; callers add the offending input, e.g.
    config errors read ``cron.x.schedule: invalid minute field "61", got "61 * * * *"``.
    """


def validate_expression(expr: str) -> None:
    """Raise :class:`CronExpressionError` unless ``expr`` is a usable cron expression.

    Five fields (minute hour day-of-month month day-of-week), or six with
    seconds first. An expression that never fires (``0 0 30 2 *``) is invalid too.
    """
    CronSchedule(expr)


def resolve_timezone(name: str | None) -> tzinfo:
    """The IANA zone ``name``; ``None`` means the host's local zone (as cron uses)."""
    if name is None:
        return _local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronExpressionError(
            f'unknown time zone "{name}" (use an IANA name such as "Europe/Berlin")'
        ) from None


def _local_zone() -> tzinfo:
    # A named zone (not a fixed offset) so that local DST changes are followed.
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        try:
            return ZoneInfo(tz_env)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


class CronSchedule:
    """The fire times of one cron expression in one time zone."""

    __slots__ = ("_minutes_expr", "_seconds", "_tz", "expr", "timezone")

    def __init__(self, expr: str, timezone: str | None = None) -> None:
        self.expr = expr
        self.timezone = timezone
        self._tz = resolve_timezone(timezone)
        parts = expr.split()
        if len(parts) not in (5, 6):
            raise CronExpressionError(
                f"expected 5 fields ({_FIELD_FORMS}) or 6 with seconds first, "
                f"got {len(parts)}"
            )
        self._minutes_expr = " ".join(parts[-5:])
        self._seconds: tuple[int, ...] = (0,)
        try:
            sim = CronSim(expr, _PROBE)
        except CronSimError as exc:
            raise _explain(exc, parts) from None
        if len(parts) == 6:
            self._seconds = tuple(sorted(sim.seconds))
        try:
            self.next_after(_PROBE.timestamp())
        except StopIteration:
            raise CronExpressionError("never fires (no matching date within 50 years)") from None

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, timezone={self.timezone!r})"

    def next_after(self, wall: float) -> float:
        """The first fire time strictly after ``wall`` (both Unix seconds)."""
        # Walk whole minutes with Debian cron's DST rules, starting with the
        # minute that holds ``wall``, and add the seconds field to each.
        start = datetime.fromtimestamp(wall - 60, self._tz)
        for minute in CronSim(self._minutes_expr, start):
            base = minute.timestamp()
            for second in self._seconds:
                # Debian skips a repeated local time (fall-back) by walking
                # local time, so a match may lie before ``wall``: keep going.
                if base + second > wall:
                    return base + second
        raise StopIteration  # pragma: no cover - cronsim stops after 50 years


def _explain(exc: CronSimError, parts: list[str]) -> CronExpressionError:
    message = str(exc)
    if message.startswith("Bad "):
        name = message[4:]
        fields = (("second",) if len(parts) == 6 else ()) + _FIELDS
        if name in fields:
            value = parts[fields.index(name)]
            if name == "day-of-month" and _day_alone_ok(value):
                return CronExpressionError(
                    f'day-of-month "{value}" never occurs in month "{parts[-2]}"'
                )
            return CronExpressionError(f'invalid {name} field "{value}"')
    return CronExpressionError(f"invalid cron expression ({message})")


def _day_alone_ok(value: str) -> bool:
    try:
        CronSim(f"0 0 {value} * *", _PROBE)
    except CronSimError:
        return False
    return True
