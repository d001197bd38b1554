"""``python -m supervisor.ray._driver``: the one process of a supervisor that imports Ray.

The supervisor never imports Ray: its 100+ MB, threads, gRPC and signal
handlers stay here, and a ``ray.init`` that hangs hangs only this process,
which the supervisor then kills. Requests come as JSON lines on stdin and
replies go to the original stdout (fd 1 itself is pointed at stderr, so that
nothing Ray prints can corrupt the replies); this process's own events are
structlog JSON lines on stderr, which the supervisor relays.

The host actors are created non-detached, so they belong to this driver: when
it ends (stdin EOF, or killed with its supervisor), Ray kills them, and a
private ``"local"`` Ray goes with ``ray.shutdown()`` or the supervisor's reaper.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
from typing import IO, Any

import structlog

from ..config._checks import RAY_RANGE
from ._placement import Placement, demand, node_resources
from ._wire import (
    Create,
    Done,
    Failed,
    Init,
    Kill,
    Pending,
    Reasons,
    Reply,
    Request,
    Shutdown,
    Started,
    decode_request,
    encode,
)

__all__ = ["SUPPORTED", "Driver", "check_version", "main"]

log = structlog.get_logger("actorsup.ray.driver")

SUPPORTED = RAY_RANGE  # Ray >=2.40,<3: the private actor table and node info read below
SUPPORTED_TEXT = "ray>=2.40,<3"
HOST_CLASS_ENV = "ACTORSUP_RAY_HOST"  # module:Class of the host actor; tests point it at a small one


def check_version(version: str) -> str | None:
    """None if Ray ``version`` is supported, else the one line saying so."""
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        parts = ()
    if len(parts) == 2 and SUPPORTED[0] <= parts < SUPPORTED[1]:
        return None
    return f"Ray {version} is not supported: install {SUPPORTED_TEXT} (pip install 'actorsup[ray]')"


class Driver:
    """The requests, carried out against the ``ray`` module."""

    def __init__(self, ray: Any, replies: IO[bytes] | None = None) -> None:
        self.ray = ray  # the module, None if it is not installed
        self.replies = replies  # where the connect timer answers (serve writes every other reply)
        self._lock = threading.Lock()
        self.namespace = "actorsup"
        self.hosts: dict[str, Any] = {}  # key -> the Ray actor handle
        self.options: dict[str, dict[str, float]] = {}  # key -> its resource demand
        self.placement = Placement()
        self._host_class: Any = None
        self._probe: Any = None

    # --- requests ---------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        if isinstance(request, Init):
            return self.init(request)
        if isinstance(request, Create):
            return self.create(request)
        if isinstance(request, Kill):
            return self.kill(request)
        if isinstance(request, Pending):
            return self.pending(request)
        return self.shutdown(request)

    def init(self, request: Init) -> Reply:
        if self.ray is None:
            return Failed(id=request.id, error="Ray is not installed: pip install 'actorsup[ray]'", fatal=True)
        problem = check_version(self.ray.__version__)
        if problem is not None:
            return Failed(id=request.id, error=problem, fatal=True)
        problem = _unreachable(_joined(request.address), request.connect_timeout)
        if problem is not None:
            return Failed(id=request.id, error=problem, fatal=True)
        self.namespace = request.namespace
        where = "start a private Ray" if request.address == "local" else f"reach Ray at {request.address}"
        # ray.init runs on the main thread (on another, Ray's calls after it can hang); a
        # timer thread answers and ends this process if it takes longer than connect_timeout.
        late = Failed(id=request.id, error=f"could not {where} within {request.connect_timeout:g} s "
                      "(connect_timeout)", fatal=True)
        timer = threading.Timer(request.connect_timeout, self._give_up, args=(late,))
        timer.daemon = True
        timer.start()
        try:
            self._connect(request)
        except Exception as exc:  # ray.init raises anything; it becomes the reply
            return Failed(id=request.id, error=f"could not {where}: {_one_line(exc)}", fatal=True)
        finally:
            timer.cancel()
        self._define_remotes()
        context = self.ray.get_runtime_context()
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return Started(
            id=request.id,
            address=context.gcs_address,
            namespace=self.namespace,
            nodes=len(nodes),
            version=self.ray.__version__,
            node_ip=self.ray.util.get_node_ip_address(),
        )

    def _give_up(self, reply: Failed) -> None:
        with self._lock:
            if self.replies is not None:
                self.replies.write(encode(reply))
                self.replies.flush()
        os._exit(1)

    def _connect(self, request: Init) -> None:
        common: dict[str, Any] = {
            "namespace": request.namespace,
            "log_to_driver": False,  # logs come over actorsup's channel, never Ray's log streaming
            "logging_level": "WARNING",
            "include_dashboard": False,
        }
        if request.address == "local" or _loopback(_joined(request.address)):
            # Ray swaps a loopback address for this machine's outward IP: keep a private
            # Ray (and a cluster on loopback, the tests') on 127.0.0.1.
            from ray._private import services

            services.resolve_ip_for_localhost = lambda host: host
            common["_node_ip_address"] = "127.0.0.1"
        if request.address == "local":
            self.ray.init(address="local", **common)
            return
        common.pop("include_dashboard")  # a joined cluster has its own
        self.ray.init(address=request.address, **common)

    def _define_remotes(self) -> None:
        module, _, name = os.environ.get(HOST_CLASS_ENV, "actors._rayhost:RayHost").partition(":")
        self._host_class = self.ray.remote(getattr(importlib.import_module(module), name))

        def probe() -> bool:
            return True

        self._probe = self.ray.remote(num_cpus=0, max_retries=0)(probe)

    def create(self, request: Create) -> Reply:
        create = request.request
        need = demand(create.options)
        options: dict[str, Any] = {
            "name": create.key,
            "namespace": self.namespace,
            "max_restarts": 0,  # restarts are actorsup's alone
            "max_task_retries": 0,
            "lifetime": None,  # non-detached: owned by this driver, so killed when it ends
        }
        for key in ("num_cpus", "num_gpus", "memory"):
            value = getattr(create.options, key)
            if value is not None:
                options[key] = value
        if create.options.resources:
            options["resources"] = dict(create.options.resources)
        for cleared in self.placement.settle(self._ready_probes()):
            log.info("ray.node_cleared", node=cleared)
        node = self.placement.avoiding_suspects(need, self._nodes(), self._free)
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        elif create.options.scheduling_strategy == "SPREAD":
            options["scheduling_strategy"] = "SPREAD"
        ticket = _encode_ticket(create)
        try:
            handle = self._host_class.options(**options).remote(ticket)
        except Exception as exc:  # a name still taken, a bad option value
            return Failed(id=request.id, error=f"Ray refused the actor {create.key}: {_one_line(exc)}")
        self.hosts[create.key] = handle
        self.options[create.key] = need
        log.info("ray.host_created", key=create.key, node=node, strategy=create.options.scheduling_strategy)
        return Done(id=request.id)

    def kill(self, request: Kill) -> Reply:
        handle = self.hosts.pop(request.key, None)
        self.options.pop(request.key, None)
        if handle is None:
            return Done(id=request.id)
        if request.unresponsive:
            node = self._node_of(handle)
            if node is not None and node not in self.placement.suspects:
                probe = self._probe.options(
                    scheduling_strategy=_affinity(node)
                ).remote()
                self.placement.suspect(node, probe)
                log.warning("ray.node_suspect", node=node, key=request.key)
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception as exc:  # already dead: nothing to do
            log.info("ray.kill_failed", key=request.key, error=_one_line(exc))
        return Done(id=request.id)

    def pending(self, request: Pending) -> Reply:
        if not self.hosts:
            return Reasons(id=request.id, reasons={})
        states = self._states()
        nodes = self._nodes()
        reasons = {}
        for key in self.hosts:
            state = states.get(key)
            if state in ("ALIVE", "DEAD"):
                continue
            reasons[key] = self.placement.why_waiting(self.options.get(key, {}), nodes)
        return Reasons(id=request.id, reasons=reasons)

    def shutdown(self, request: Shutdown) -> Reply:
        for handle in self.hosts.values():
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception:
                continue
        self.hosts.clear()
        if self.ray.is_initialized():
            self.ray.shutdown()
        return Done(id=request.id)

    # --- what Ray knows ----------------------------------------------------------------
    def _nodes(self) -> list[tuple[str, dict[str, float]]]:
        nodes: list[dict[str, Any]] = self.ray.nodes()
        return node_resources(nodes)

    def _free(self) -> dict[str, dict[str, float]]:
        """The resources available now on each node (node id -> resource -> amount)."""
        from ray._private import state

        free: dict[str, dict[str, float]] = state.available_resources_per_node()
        return free

    def _states(self) -> dict[str, str]:
        """Our hosts' states in the GCS actor table, by name (one call for all of them)."""
        from ray._private import state

        job = self.ray.JobID.from_hex(self.ray.get_runtime_context().get_job_id())
        table = state.actors(job_id=job)
        found: dict[str, str] = {}
        for info in table.values():
            name = info.get("Name")
            if name in self.hosts and found.get(name) != "ALIVE":
                found[name] = info.get("State", "")
        return found

    def _node_of(self, handle: Any) -> str | None:
        from ray._private import state

        try:
            info = state.actors(actor_id=handle._actor_id.hex())
        except Exception:
            return None
        node = (info.get("Address") or {}).get("NodeID") if isinstance(info, dict) else None
        return node or None

    def _ready_probes(self) -> list[Any]:
        refs = list(self.placement.probes())
        if not refs:
            return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return list(ready)


def _affinity(node: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node, soft=False)


def _encode_ticket(create: Any) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(create.ticket)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _joined(address: str) -> str:
    """The cluster ``"auto"`` stands for when ``RAY_ADDRESS`` names it (Ray's own first choice)."""
    named = os.environ.get("RAY_ADDRESS", "")
    return named if address == "auto" and ":" in named and "://" not in named else address


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0]
    return host in ("127.0.0.1", "localhost", "::1")


def _unreachable(address: str, timeout: float) -> str | None:
    """For ``HOST:PORT``: why its port does not answer (Ray's own error takes long to come)."""
    if address in ("local", "auto"):
        return None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except TimeoutError:
        return f"could not reach Ray at {address} within {timeout:g} s (connect_timeout)"
    except OSError as exc:
        return f"could not reach Ray at {address}: {exc.strerror or exc}"


def _configure_logging() -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def serve(driver: Driver, requests: IO[bytes], replies: IO[bytes]) -> int:
    """Answer requests until Shutdown, a fatal failure or EOF; the exit status."""
    for line in requests:
        try:
            request = decode_request(line)
        except Exception as exc:
            log.error("ray.bad_request", error=_one_line(exc))
            continue
        reply = driver.handle(request)
        with driver._lock:
            replies.write(encode(reply))
            replies.flush()
        if isinstance(reply, Failed) and reply.fatal:
            return 1
        if isinstance(request, Shutdown):
            return 0
    driver.shutdown(Shutdown(id=0))  # EOF: the supervisor is gone
    return 0


def main() -> int:
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever Ray prints goes to stderr, never into the replies
    _configure_logging()
    try:
        import ray
    except ImportError:  # Init says so
        ray = None
    status = serve(Driver(ray, replies), sys.stdin.buffer, replies)
    replies.flush()
    sys.stdout.flush()
    os._exit(status)  # Ray's threads must not hold the exit


if __name__ == "__main__":
    sys.exit(main())
