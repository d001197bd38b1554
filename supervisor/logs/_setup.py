"""Configure structlog once, at the supervisor's entry point, to feed the router."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import structlog

from ._router import LogRouter

__all__ = ["configure_supervisor_logging"]


def configure_supervisor_logging(router: LogRouter) -> None:
    def to_router(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        router.emit(event_dict)  # type: ignore[arg-type]  # structlog hands over its dict
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            to_router,
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
