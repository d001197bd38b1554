"""The log pipeline: router, sinks, spool."""

from ._build import build_sinks as build_sinks
from ._lines import LineAssembler as LineAssembler
from ._record import LogRecord as LogRecord
from ._router import LogRouter as LogRouter
from ._setup import configure_supervisor_logging as configure_supervisor_logging
from ._sinks import Sink as Sink
from ._sinks import StdoutSink as StdoutSink

__all__ = ["LineAssembler", "LogRecord", "LogRouter", "Sink", "StdoutSink", "build_sinks", "configure_supervisor_logging"]
