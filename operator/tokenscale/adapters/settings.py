"""Operator settings from the environment (the chart sets them from values.yaml)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tokenscale.adapters.logs import FORMATS, LEVELS

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def window_seconds(window: str) -> float:
    """A Prometheus range like 30s, 1m or 1h, in seconds."""
    found = re.fullmatch(r"([0-9]+)([smh])", window)
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"window {window!r} must look like 30s, 1m or 1h")
    return float(int(found.group(1)) * UNIT_SECONDS[found.group(2)])


@dataclass(frozen=True)
class AutoscaleSettings:
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    window: str = "1m"
    timeout_seconds: float = 5.0
    interval_seconds: float = 15.0
    metrics_port: int = 9464
    namespaces: tuple[str, ...] = ()
    enabled: bool = True
    capacity_aware: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AutoscaleSettings:
        """TOKENSCALE_* variables; a malformed one fails start-up naming the variable."""
        env = os.environ if env is None else env
        base = cls()

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise ValueError(f"{name}={raw!r} must be positive")
            return value

        namespaces = tuple(n for n in env.get("TOKENSCALE_WATCH_NAMESPACES", "").split(",") if n)
        window = env.get("TOKENSCALE_PROMETHEUS_WINDOW") or base.window
        try:
            window_seconds(window)
        except ValueError as exc:
            raise ValueError(f"TOKENSCALE_PROMETHEUS_WINDOW: {exc}") from None
        return cls(
            prometheus_url=env.get("TOKENSCALE_PROMETHEUS_URL", base.prometheus_url),
            window=window,
            timeout_seconds=number("TOKENSCALE_PROMETHEUS_TIMEOUT_SECONDS", base.timeout_seconds),
            interval_seconds=number("TOKENSCALE_AUTOSCALE_INTERVAL_SECONDS", base.interval_seconds),
            metrics_port=int(number("TOKENSCALE_METRICS_PORT", base.metrics_port)),
            namespaces=namespaces,
            enabled=env.get("TOKENSCALE_AUTOSCALE", "on") != "off",
            capacity_aware=env.get("TOKENSCALE_CAPACITY_AWARE", "on") != "off",
        )

    @property
    def window_seconds(self) -> float:
        return window_seconds(self.window)


@dataclass(frozen=True)
class LogSettings:
    """The operator's log: level (debug, info, warning, error) and format (text, json)."""

    level: str = "info"
    format: str = "text"

    @classmethod
    def resolve(
        cls,
        level: str | None = None,
        fmt: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> LogSettings:
        """A command-line value wins over TOKENSCALE_LOG_LEVEL / TOKENSCALE_LOG_FORMAT; a bad
        value fails start-up naming the variable and the values it takes."""
        env = os.environ if env is None else env
        chosen = []
        for name, given, allowed, default in (
            ("TOKENSCALE_LOG_LEVEL", level, LEVELS, cls.level),
            ("TOKENSCALE_LOG_FORMAT", fmt, FORMATS, cls.format),
        ):
            value = (given or env.get(name) or default).lower()
            if value not in allowed:
                raise ValueError(f"{name}={value!r} must be one of {', '.join(allowed)}")
            chosen.append(value)
        return cls(level=chosen[0], format=chosen[1])
