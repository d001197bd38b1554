"""Build the sinks described by ``[[logs.sinks]]`` config tables."""

from __future__ import annotations

from typing import Any

from ..config import SinkSpec
from ._file import FileSink
from ._net import SyslogSink, TcpSink
from ._relp import RelpSink
from ._sinks import Sink, StdoutSink

__all__ = ["build_sinks"]


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
