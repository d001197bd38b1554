"""In-process cron tasks with CronManager: docs/CRON.md, "From Python: CronManager".

Run from the repository root:  .venv/bin/python examples/quickstart/cron_api.py
"""

import anyio

from actors import CronTask
from supervisor.cron import CronManager


class Cleanup(CronTask):
    async def run(self) -> None:
        self.log.info("cleaned", removed=4)


async def main() -> None:
    async with CronManager() as cron:              # state_dir=None: history in memory
        cron.register_task("cleanup", Cleanup(interval=0.5), overlap="skip")
        await cron.start_all_tasks()
        run_id = await cron.trigger("cleanup")     # run now, under the overlap policy
        record = await cron.wait_run("cleanup", run_id)
        assert record is not None                  # None only for a run_id it never knew
        print(record.outcome, cron.list_tasks())   # ok ['cleanup']
        await anyio.sleep(1.2)                     # two scheduled runs
        await cron.stop_all_tasks()

anyio.run(main)
