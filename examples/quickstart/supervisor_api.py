"""Embed a Supervisor in a program: README.md, "Python API".

Run from the repository root:  .venv/bin/python examples/quickstart/supervisor_api.py
"""

import anyio

from supervisor import ActorState, Supervisor, load_config


async def main() -> None:
    config = load_config("examples/quickstart/actorsup.toml")
    async with anyio.create_task_group() as tg:
        sup = await tg.start(Supervisor(config).run)
        await sup.wait_for_state("fetcher", ActorState.RUNNING)
        await sup.restart_actor("fetcher")  # graceful stop, then start again
        await sup.wait_for_state("fetcher", ActorState.RUNNING)
        print([(row["name"], row["state"]) for row in sup.status()])
        await sup.shutdown()  # stops every actor, each after those that depend on it


anyio.run(main, backend="trio")
