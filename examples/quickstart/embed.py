"""Run a Supervisor from Python: README.md, "Python API".

Run from the repository root:  .venv/bin/python examples/quickstart/embed.py
"""

import anyio

from supervisor import ActorState, Supervisor, load_config


async def main() -> None:
    config = load_config("examples/quickstart/actorsup.toml")
    async with anyio.create_task_group() as tg:
        sup = await tg.start(Supervisor(config).run)
        async with sup.subscribe_events() as events:
            await sup.wait_for_state("fetcher", ActorState.RUNNING)
            await sup.restart_actor("fetcher")
            async for event in events:  # state changes, as dicts
                print(event["event"], event["actor"], event.get("state"))
                if event["event"] == "actor.started" and event["actor"] == "fetcher":
                    break
        print([(row["name"], row["state"]) for row in sup.status()])
        await sup.shutdown()  # stops every actor, each after those that depend on it


anyio.run(main, backend="trio")
