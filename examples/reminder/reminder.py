"""A custom cron task: a reminder that logs a message, with a snooze count.

Run it with the supervisor (``actorsup run actorsup.toml`` in this folder) or,
without one, from Python: ``python reminder.py`` schedules it in-process.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actors import CronTask


class Reminder(CronTask):
    """Logs ``message`` on every run; ``every_nth`` runs it also warns, louder."""

    interval = 60.0

    def __init__(
        self,
        message: str = "stand up and stretch",
        to: str = "everyone",
        every_nth: int = 0,
        **timing: Any,  # interval / schedule / timezone, when used from Python
    ) -> None:
        super().__init__(**timing)
        if every_nth < 0:
            raise ValueError(f"every_nth must be >= 0 (got {every_nth})")
        self.message = message
        self.to = to
        self.every_nth = every_nth
        self.sent = 0

    async def run(self) -> None:
        self.sent += 1
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.log.info("reminder.sent", message=self.message, to=self.to, count=self.sent, at=now)
        if self.every_nth and self.sent % self.every_nth == 0:
            self.log.warning("reminder.overdue", message=self.message, count=self.sent)


async def _demo() -> None:
    import structlog

    from supervisor.cron import CronManager

    structlog.configure(processors=[structlog.processors.JSONRenderer()])
    async with CronManager() as cron:
        cron.register_task("stretch", Reminder(interval=2.0, every_nth=3))
        await cron.start_all_tasks()
        await cron.trigger("stretch")  # one right away
        await anyio.sleep(7)
        for run in cron.history("stretch"):
            print(run.run_id, run.trigger, run.outcome, f"{run.duration:.4f}s")


if __name__ == "__main__":
    import anyio

    anyio.run(_demo)
