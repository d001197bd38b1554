"""An embedded Supervisor with the config's log sinks and the control socket, as
`actorsup run` wires it (docs/API.md, "Embedding"). While it runs,
`actorsup status -c examples/quickstart/actorsup.toml` works; `actorsup shutdown -c ...` ends it.

Run from the repository root:  .venv/bin/python examples/quickstart/serve.py
"""

import anyio

from supervisor import Supervisor, load_config
from supervisor.control import ControlServer, socket_path_for
from supervisor.logs import LogRouter, build_sinks, configure_supervisor_logging


async def main() -> None:
    config = load_config("examples/quickstart/actorsup.toml")
    router = LogRouter(build_sinks(config.logs.sinks), ring_size=config.supervisor.log_buffer)
    configure_supervisor_logging(router)  # the supervisor's own events go to the sinks too
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(router.run)
            sup = Supervisor(config, router=router)
            await tg.start(ControlServer(sup, socket_path_for(config)).serve)  # actorsup status -c ...
            await tg.start(sup.run)
            await sup.closed.wait()  # until `actorsup shutdown` (or sup.shutdown())
            tg.cancel_scope.cancel()
    finally:
        await router.aclose()


anyio.run(main, backend="trio")
