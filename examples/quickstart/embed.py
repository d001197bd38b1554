"""Run a Supervisor from Python: README.md, "Python API".

Run from the repository root:  .venv/bin/python examples/quickstart/embed.py
"""

import anyio

from supervisor import load_config
from supervisor._supervisor import Supervisor


async def main() -> None:
    config = load_config("examples/quickstart/actorsup.toml")
    async with anyio.create_task_group() as tg:
        sup = await tg.start(Supervisor(config).run)
        async with sup.subscribe_events() as events:
            async for event in events:              # state changes, as dicts
                if event["event"] == "actor.started" and event["actor"] == "fetcher":
                    break
        print(sup.status())
        await sup.shutdown()                        # stops every actor, in reverse order

anyio.run(main, backend="trio")
