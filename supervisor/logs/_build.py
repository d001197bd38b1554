"""Build the sinks described by ``[[logs.sinks]]`` config tables."""

from __future__ import annotations

from ..config import SinkSpec
from ._sinks import Sink, StdoutSink

__all__ = ["build_sinks"]


def build_sinks(specs: tuple[SinkSpec, ...]) -> list[Sink]:
    """One sink per spec, in config order; no spec at all means one stdout sink."""
    sinks: list[Sink] = []
    for spec in specs or (SinkSpec(type="stdout"),):
        if spec.type == "stdout":
            sinks.append(StdoutSink(spec))
        else:  # file/tcp/syslog land in the next commits
            sinks.append(StdoutSink(spec))
    return sinks
