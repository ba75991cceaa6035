"""The operator's log: plain text for a terminal or JSON lines for a cluster log pipeline, one
line per decision and per change of an error state, never a line per tick.

Records about one InferenceService carry it as `k8s_ref` (the attribute kopf's own per-object
records use), so both formats name the service the same way for kopf's lines and ours.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import threading
from collections.abc import Hashable
from typing import Any

from tokenscale.api.v1alpha1 import API_VERSION, KIND

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# kopf logs "Handler 'on_pod' succeeded." at info for every watch event of every pod, child and
# status write: hundreds of lines a minute that say nothing. They stay, at debug.
_HANDLER_SUCCEEDED = re.compile(r"^Handler '[^']+' succeeded\.$")


def about(namespace: str, name: str, **fields: Any) -> dict[str, Any]:
    """`extra=` for a record about one service; `fields` become JSON keys."""
    ref = {"apiVersion": API_VERSION, "kind": KIND, "namespace": namespace, "name": name}
    return {"k8s_ref": ref, "tokenscale": fields}


def _prefix(record: logging.LogRecord) -> str:
    ref = getattr(record, "k8s_ref", None) or {}
    if not ref.get("name"):
        return ""
    return f"[{ref['namespace']}/{ref['name']}] " if ref.get("namespace") else f"[{ref['name']}] "


class TextFormatter(logging.Formatter):
    """`[time] LEVEL logger: [namespace/name] message`."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s] %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = _prefix(record)
        if not prefix:
            return super().format(record)
        record = logging.makeLogRecord(record.__dict__)
        record.msg, record.args = prefix + record.getMessage(), None
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the service (namespace, name)
    when the record is about one, its structured fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None) or {}
        if ref.get("name"):
            entry["namespace"], entry["name"] = ref.get("namespace"), ref["name"]
        entry.update(getattr(record, "tokenscale", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class QuietHandlerSuccess(logging.Filter):
    """kopf's per-event "Handler ... succeeded." lines pass only when debug is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("kopf"):
            return True
        if not _HANDLER_SUCCEEDED.match(str(record.msg)):
            return True
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def configure(level: str, fmt: str, stream: Any = None) -> logging.Handler:
    """Replace the root logger's handlers with one writing `fmt` at `level`."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} must be one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(QuietHandlerSuccess())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # asyncio's debug chatter and urllib3's connection notes only when debugging.
    for noisy in ("asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return handler


class ErrorStates:
    """Log a failure when it starts or changes (error, with the traceback) and when it ends
    (info); a repeat of the same failure goes to debug. Keyed by what failed (a service, the
    tick). Thread-safe: the tick's writers run on a pool."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._current: dict[Hashable, str] = {}
        self._lock = threading.Lock()

    def failed(self, key: Hashable, exc: BaseException, message: str, *args: object) -> None:
        text = f"{type(exc).__name__}: {exc}"
        with self._lock:
            new = self._current.get(key) != text
            self._current[key] = text
        if new:
            self._log.error(message, *args, exc_info=exc)
        else:
            self._log.debug(message + " again: %s", *args, text)

    def recovered(self, key: Hashable, message: str, *args: object) -> None:
        with self._lock:
            was = self._current.pop(key, None)
        if was is not None:
            self._log.info(message, *args)
