"""Build the sinks described by ``[[logs.sinks]]`` config tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ..config import SinkSpec
from ._file import FileSink
from ._net import SyslogSink, TcpSink
from ._relp import RelpSink
from ._sinks import Sink, StdoutSink, describe

__all__ = ["SinkPlan", "build_sinks", "plan_sinks"]


def build_sinks(specs: tuple[SinkSpec, ...], **options: Any) -> list[Sink]:
    """One sink per spec, in config order; no spec at all means one stdout sink.

    ``options`` (``clock``, and for network sinks ``backoff_initial``,
    ``backoff_max``, ``replay_bytes``, ...) are passed to every sink that takes them.
    """
    sinks: list[Sink] = []
    for spec in specs or (SinkSpec(type="stdout"),):
        if spec.type == "stdout":
            sinks.append(StdoutSink(spec))
        elif spec.type == "file":
            sinks.append(FileSink(spec, clock=options.get("clock")))
        elif spec.type == "tcp":
            sinks.append(TcpSink(spec, **options))
        elif spec.type == "syslog":
            sinks.append(SyslogSink(spec, **options))
        elif spec.type == "relp":
            sinks.append(RelpSink(spec, **options))
        else:
            raise ValueError(
                f'unknown sink type {spec.type!r} (expected "stdout", "file", "tcp", "syslog" or "relp")'
            )
    return sinks


# A sink whose spec changes only in these keys is kept: the router reads them per event.
_FILTERS = ("level", "actors")


@dataclass(frozen=True, eq=False)
class SinkPlan:
    """What a reload does to the sinks: the new list (config order) and how it differs."""

    sinks: list[Sink]
    added: list[Sink]  # built, not yet running
    removed: list[Sink]  # to close once swapped out
    refiltered: list[tuple[Sink, SinkSpec]]  # kept, with a new level or actors filter

    @property
    def changes(self) -> list[str]:
        """One line per change, for the reload's answer and its log event."""
        return ([f"added {describe(s.spec)}" for s in self.added]
                + [f"removed {describe(s.spec)}" for s in self.removed]
                + [f"changed {describe(s.spec)}" for s, _ in self.refiltered])


async def plan_sinks(
    current: list[Sink], specs: tuple[SinkSpec, ...],
    build: Callable[[tuple[SinkSpec, ...]], list[Sink]] = build_sinks,
) -> SinkPlan:
    """Match ``specs`` to the running sinks: an equal spec keeps its sink (its file or
    connection stays open), a spec that differs only in ``level``/``actors`` keeps it
    with the new filter, anything else is built anew; the unmatched old sinks go."""
    wanted: list[SinkSpec] = list(specs or (SinkSpec(type="stdout"),))
    chosen: list[Sink | None] = [None] * len(wanted)
    free = list(current)
    refiltered: list[tuple[Sink, SinkSpec]] = []
    for same in (_equal, _same_but_filters):  # exact matches first
        for i, spec in enumerate(wanted):
            match = next((s for s in free if chosen[i] is None and same(s.spec, spec)), None)
            if match is not None:
                free.remove(match)
                chosen[i] = match
                if match.spec != spec:
                    refiltered.append((match, spec))
    added: list[Sink] = []
    try:
        for i, spec in enumerate(wanted):
            if chosen[i] is None:
                sink = build((spec,))[0]
                added.append(sink)
                chosen[i] = sink
    except BaseException:
        with anyio.CancelScope(shield=True):
            for sink in added:  # nothing changes: release what was opened
                await sink.aclose()
        raise
    return SinkPlan([s for s in chosen if s is not None], added, free, refiltered)


def _equal(old: SinkSpec, new: SinkSpec) -> bool:
    return old == new


def _same_but_filters(old: SinkSpec, new: SinkSpec) -> bool:
    return msgspec.structs.replace(old, **{k: getattr(new, k) for k in _FILTERS}) == new
