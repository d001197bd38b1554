"""The control commands stay fast: they import the client side only, never the supervisor's stack."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from supervisor.control import ControlServer
from supervisor.control.testing import FakeTarget

pytestmark = pytest.mark.anyio

HEAVY = {"structlog", "prometheus_client", "rich", "asyncio", "anyio", "trio", "msgspec", "psutil", "tomllib"}
PROBE = """
import json, sys
from supervisor.app._cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


@asynccontextmanager
async def serving() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fast-", dir="/tmp") as d, capture_logs():
        path = Path(d) / "s.sock"
        async with anyio.create_task_group() as tg:
            await tg.start(ControlServer(FakeTarget(), path).serve)
            yield path
            tg.cancel_scope.cancel()


async def imported(*argv: str) -> tuple[int, set[str]]:
    """Run the CLI in a fresh interpreter; its exit code and the top-level packages it imported."""
    result = await anyio.run_process([sys.executable, "-c", PROBE, *argv], check=False,
                                     env=dict(os.environ, PYTHONPATH=os.getcwd()))
    report = json.loads(result.stderr.decode().splitlines()[-1])
    return report["code"], {name.split(".")[0] for name in report["modules"]}


class TestImports:
    @pytest.mark.parametrize("argv", [
        ["status", "--json"], ["heartbeat", "status", "--json"], ["logs", "--json"], ["logs"],
        ["restart", "actor-001"], ["cron", "list", "--json"]])
    async def test_json_and_lifecycle_commands_import_nothing_heavy(self, argv: list[str]) -> None:
        """status --json (and its kin) import none of structlog, prometheus_client, rich, asyncio, anyio, trio."""
        async with serving() as path:
            code, modules = await imported(*argv, "--socket", str(path))
        assert code == 0
        assert modules & HEAVY == set()

    async def test_a_table_imports_rich_only(self) -> None:
        """status as a table pays for rich, and for nothing else of the supervisor's stack."""
        async with serving() as path:
            code, modules = await imported("status", "--socket", str(path))
        assert code == 0
        assert modules & HEAVY == {"rich"}
