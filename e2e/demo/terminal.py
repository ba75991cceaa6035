"""The demo's terminal: on a terminal, one status line redrawn in place with the events (phase
changes, decisions) printed above it; elsewhere (a pipe, a CI log, a file) plain lines only, a
status line every `every_s` seconds, so a transcript reads as a story."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TextIO

CLEAR_LINE = "\r\033[K"


@dataclass
class Display:
    stream: TextIO
    live: bool
    every_s: float = 5.0
    _last_status_t: float | None = None
    _status_shown: bool = False

    def event(self, line: str) -> None:
        """A line that stays: printed above the live status line (or plainly)."""
        if self.live and self._status_shown:
            self.stream.write(CLEAR_LINE)
            self._status_shown = False
        self.stream.write(line + "\n")
        self.stream.flush()

    def status(self, line: str, t: float) -> None:
        """The current state: redrawn in place, or printed once every `every_s` seconds."""
        if self.live:
            width = shutil.get_terminal_size((160, 20)).columns
            self.stream.write(CLEAR_LINE + line[: max(20, width - 1)])
            self._status_shown = True
            self.stream.flush()
        elif self._last_status_t is None or t - self._last_status_t >= self.every_s:
            self._last_status_t = t
            self.event(line)

    def close(self) -> None:
        if self.live and self._status_shown:
            self.stream.write("\n")
            self._status_shown = False
            self.stream.flush()
