"""The log pipeline: router, sinks, spool."""

from ._build import build_sinks as build_sinks
from ._file import FileSink as FileSink
from ._lines import LineAssembler as LineAssembler
from ._net import NetworkSink as NetworkSink
from ._net import SyslogSink as SyslogSink
from ._net import TcpSink as TcpSink
from ._record import LogRecord as LogRecord
from ._router import LogRouter as LogRouter
from ._setup import configure_supervisor_logging as configure_supervisor_logging
from ._sinks import Sink as Sink
from ._sinks import StdoutSink as StdoutSink
from ._spool import Spool as Spool

__all__ = [
    "FileSink",
    "LineAssembler",
    "LogRecord",
    "LogRouter",
    "NetworkSink",
    "Sink",
    "Spool",
    "StdoutSink",
    "SyslogSink",
    "TcpSink",
    "build_sinks",
    "configure_supervisor_logging",
]
