"""Cron expressions and time zones: validation messages, next fire times, DST."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs
from test_cron_fakes import FakeExecutor, QuickClock, local, make_spec, running, wall_at

from supervisor.config import parse_config
from supervisor.cron._expr import CronExpressionError, CronSchedule, validate_expression
from supervisor.exceptions import ConfigError

NY = "America/New_York"
BERLIN = "Europe/Berlin"
FIELDS = "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first"


def fire_times(expr: str, zone: str, start: str, count: int) -> list[str]:
    schedule = CronSchedule(expr, zone)
    wall = wall_at(start, zone)
    found = []
    for _ in range(count):
        wall = schedule.next_after(wall)
        found.append(local(wall, zone))
    return found


class TestValidation:
    @pytest.mark.parametrize(
        ("expr", "message"),
        [
            ("* * * *", f"{FIELDS}, got 4"),
            ("@daily", f"{FIELDS}, got 1"),
            ("61 * * * *", 'invalid minute field "61"'),
            ("*/0 * * * *", 'invalid minute field "*/0"'),
            ("0 24 * * *", 'invalid hour field "24"'),
            ("* * * 13 *", 'invalid month field "13"'),
            ("* * * * 8", 'invalid day-of-week field "8"'),
            ("70 * * * * *", 'invalid second field "70"'),
            ("0 0 30 2 *", 'day-of-month "30" never occurs in month "2"'),
        ],
    )
    def test_bad_expressions_say_what_is_wrong(self, expr: str, message: str) -> None:
        """Each bad expression raises CronExpressionError with a precise message."""
        with pytest.raises(CronExpressionError) as info:
            validate_expression(expr)
        assert str(info.value) == message

    def test_the_error_is_a_value_error_and_a_supervisor_error(self) -> None:
        """CronExpressionError can be caught as ValueError or as SupervisorError."""
        from supervisor.exceptions import SupervisorError

        assert issubclass(CronExpressionError, ValueError)
        assert issubclass(CronExpressionError, SupervisorError)

    def test_an_unknown_timezone_is_rejected_with_a_hint(self) -> None:
        """An unknown zone name raises with the accepted form."""
        with pytest.raises(
            CronExpressionError,
            match=r'^unknown time zone "Mars/Olympus" \(use an IANA name such as "Europe/Berlin"\)$',
        ):
            CronSchedule("0 3 * * *", "Mars/Olympus")

    def test_config_reports_the_key_and_the_bad_expression(self) -> None:
        """A bad schedule in a config names cron.NAME.schedule and shows the value."""
        data = {"cron": {"nightly": {"target": "actors.builtin:CleanupTask", "schedule": "61 * * * *"}}}
        with pytest.raises(ConfigError) as info:
            parse_config(data, label="actorsup.toml")
        assert str(info.value) == (
            'actorsup.toml: cron.nightly.schedule: invalid minute field "61", got "61 * * * *"'
        )

    def test_good_expressions_pass(self) -> None:
        """Five fields, six with seconds, names and steps are accepted."""
        for expr in ("*/5 * * * *", "0 3 * * MON-FRI", "59/15 * * * *", "*/10 * * * * *", "0 0 L * *"):
            validate_expression(expr)


class TestNextAfter:
    def test_next_after_is_strictly_after(self) -> None:
        """A time that is itself a fire time yields the following one."""
        schedule = CronSchedule("*/5 * * * *", "UTC")
        assert schedule.next_after(1_704_067_200.0) == 1_704_067_500.0  # 00:00 -> 00:05
        assert schedule.next_after(1_704_067_199.5) == 1_704_067_200.0

    def test_a_seconds_field_fires_within_the_minute(self) -> None:
        """Six fields: the first one is seconds."""
        times = fire_times("*/20 * * * * *", "UTC", "2024-01-01 00:00:00", 4)
        assert times == [
            "2024-01-01 00:00:20+0000", "2024-01-01 00:00:40+0000",
            "2024-01-01 00:01:00+0000", "2024-01-01 00:01:20+0000",
        ]

    def test_steps_keep_their_debian_meaning(self) -> None:
        """59/15 means minute 59 only (range 59-59 in steps of 15), as in Debian cron."""
        assert fire_times("59/15 * * * *", "UTC", "2024-01-01 00:00", 2) == [
            "2024-01-01 00:59:00+0000", "2024-01-01 01:59:00+0000",
        ]


class TestDaylightSaving:
    def test_a_daily_0130_job_runs_once_on_the_new_york_fall_back_day(self) -> None:
        """01:30 happens twice on 2024-11-03 in New York; the job runs at the first one only."""
        times = fire_times("30 1 * * *", NY, "2024-11-02 12:00", 3)
        assert times == [
            "2024-11-03 01:30:00-0400", "2024-11-04 01:30:00-0500", "2024-11-05 01:30:00-0500",
        ]

    def test_a_six_field_daily_job_also_runs_once_on_the_fall_back_day(self) -> None:
        """A seconds field does not change the Debian DST rules."""
        times = fire_times("15 30 1 * * *", NY, "2024-11-02 12:00", 2)
        assert times == ["2024-11-03 01:30:15-0400", "2024-11-04 01:30:15-0500"]

    def test_a_daily_0230_job_runs_once_on_the_berlin_fall_back_day(self) -> None:
        """02:30 happens twice on 2024-10-27 in Berlin; the job runs once, in summer time."""
        times = fire_times("30 2 * * *", BERLIN, "2024-10-26 12:00", 2)
        assert times == ["2024-10-27 02:30:00+0200", "2024-10-28 02:30:00+0100"]

    def test_a_job_in_the_skipped_hour_runs_right_after_spring_forward(self) -> None:
        """02:30 does not exist on 2024-03-10 in New York; like Debian cron it runs at 03:00."""
        times = fire_times("30 2 * * *", NY, "2024-03-09 12:00", 2)
        assert times == ["2024-03-10 03:00:00-0400", "2024-03-11 02:30:00-0400"]

    def test_an_hourly_wildcard_job_follows_real_time_through_fall_back(self) -> None:
        """A job with a wildcard hour runs in both passes of the repeated hour (Debian too)."""
        times = fire_times("0 * * * *", NY, "2024-11-03 00:30", 3)
        assert times == [
            "2024-11-03 01:00:00-0400", "2024-11-03 01:00:00-0500", "2024-11-03 02:00:00-0500",
        ]

    @pytest.mark.anyio
    async def test_the_scheduler_runs_the_0130_job_once_across_the_fall_back_day(self) -> None:
        """Three simulated days in New York: one run per day, at 01:30 local, once on Nov 3."""
        start = wall_at("2024-11-02 12:00", NY)
        clock = QuickClock(wall_offset=start)
        executor = FakeExecutor(clock)
        with capture_logs():
            async with running(
                make_spec(schedule="30 1 * * *", timezone=NY), executor, clock, wall_check=3600.0
            ):
                await clock.advance(3 * 86400)
        started = [local(clock.wall() - clock.now() + t, NY) for t in executor.starts]
        assert started == [
            "2024-11-03 01:30:00-0400", "2024-11-04 01:30:00-0500", "2024-11-05 01:30:00-0500",
        ]

    @pytest.mark.anyio
    async def test_the_scheduler_runs_the_skipped_0230_job_at_0300(self) -> None:
        """On the spring-forward day the scheduler starts the 02:30 job at 03:00 local."""
        start = wall_at("2024-03-09 12:00", NY)
        clock = QuickClock(wall_offset=start)
        executor = FakeExecutor(clock)
        with capture_logs():
            async with running(
                make_spec(schedule="30 2 * * *", timezone=NY), executor, clock, wall_check=3600.0
            ):
                await clock.advance(2 * 86400)
        started = [local(clock.wall() - clock.now() + t, NY) for t in executor.starts]
        assert started == ["2024-03-10 03:00:00-0400", "2024-03-11 02:30:00-0400"]
