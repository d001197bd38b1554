"""Run a Supervisor from Python: README.md, "Python API".

Run from the repository root:  .venv/bin/python examples/quickstart/embed.py
"""

import anyio

from supervisor import ActorState, Supervisor, load_config
from supervisor.control import ControlServer, arequest, socket_path_for


async def main() -> None:
    config = load_config("examples/quickstart/actorsup.toml")
    async with anyio.create_task_group() as tg:
        sup = await tg.start(Supervisor(config).run)
        # The control socket, as `actorsup run` serves it: while this runs,
        # `actorsup status -c examples/quickstart/actorsup.toml` works too.
        path = await tg.start(ControlServer(sup, socket_path_for(config)).serve)
        await sup.wait_for_state("fetcher", ActorState.RUNNING)
        async with sup.subscribe_events() as events:  # from now on: the restart's events only
            await sup.restart_actor("fetcher")
            async for event in events:  # state changes, as dicts
                if event["actor"] == "fetcher":
                    print(event["event"], event["actor"], event.get("state"))
                if event["event"] == "actor.started" and event["actor"] == "fetcher":
                    break
        print([(row["name"], row["state"]) for row in sup.status()])
        rows = await arequest(path, "status")  # what any control client sees
        print(f"the control socket {path} answers: {len(rows)} rows")
        await sup.shutdown()  # stops every actor, each after those that depend on it
        await sup.closed.wait()
        tg.cancel_scope.cancel()  # the control server serves until cancelled


anyio.run(main, backend="trio")
