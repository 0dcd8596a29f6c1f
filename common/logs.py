"""Structured logging: a stable event name followed by key=value fields.

log.info("call.finished", extra=fields(call=call_id, status="DONE"))
"""

import logging
import sys
from typing import Any


def fields(**kv: Any) -> dict[str, Any]:
    return {"fields": kv}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = (
            f"{self.formatTime(record, '%H:%M:%S')}.{int(record.msecs):03d} {record.levelname:<5} "
            f"{record.name}: {record.getMessage()}"
        )
        kv = getattr(record, "fields", None)
        if kv:
            base += " " + " ".join(f"{k}={v}" for k, v in kv.items() if v is not None)
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates what the gateway logs itself.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
