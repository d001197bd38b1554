"""``python -m tests.ray_supervisor_main GCS LEASE_TIMEOUT``: a Supervisor with one ray actor, logging to stdout.

The SIGKILL test runs this as a separate process that joins the test's Ray,
so it can kill the supervisor and watch what it leaves behind. Its Ray actors
are detached: Ray does not end them with this driver, only the lease does.
"""

from __future__ import annotations

import sys

import anyio
import msgspec

from supervisor._supervisor import Supervisor
from supervisor.config._schema import RaySettings
from supervisor.logs import LogRouter, build_sinks, configure_supervisor_logging
from tests.harness import make_config
from tests.rayreal import InProcessRayBackend, ray


async def main(lease_timeout: float) -> None:
    router = LogRouter(build_sinks(()))
    configure_supervisor_logging(router)
    config = make_config({"s": {"target": "tests.sample_actors:Steady", "kind": "ray"}})
    config = msgspec.structs.replace(config, ray=RaySettings(lease_timeout=lease_timeout))
    async with anyio.create_task_group() as tg:
        await tg.start(router.run)
        await Supervisor(config, router=router, ray_backend=InProcessRayBackend(detached=True)).run()


if __name__ == "__main__":
    assert ray is not None
    ray.init(address=sys.argv[1], namespace="actorsup-test", log_to_driver=False, configure_logging=False)
    anyio.run(main, float(sys.argv[2]), backend="trio")
