"""A progress line for long CLI work (convert, sample generation, bench runs).

On a terminal: one line redrawn in place (``\\r``) at most every 0.2 s, ended once. Elsewhere
(a log file, CI): a plain line at most every 10 s and at the end, never a ``\\r``. ``close()``
ends the line, so an error printed afterwards starts on a line of its own.
"""

from __future__ import annotations

import time
from typing import Optional, TextIO


class Progress:
    def __init__(self, stream: Optional[TextIO], total: int, what: str, done: int = 0) -> None:
        self.stream, self.total, self.what, self.count = stream, total, what, done
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else 10.0
        self.start = time.monotonic()
        self.last = -1e9
        self._shown = -1  # the count on screen
        self._open = False  # a \r line is on screen, not yet ended
        self.update(done)

    def add(self, n: int) -> None:
        self.update(self.count + n)

    def update(self, count: int) -> None:
        self.count = count
        if self.stream is None or count == self._shown:
            return
        now = time.monotonic()
        if now - self.last >= self.every or (count >= self.total and self.tty):
            self._show(now)

    def _show(self, now: float) -> None:
        assert self.stream is not None
        self.last, self._shown = now, self.count
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0.5 else 0.0
        width = 30
        filled = width * min(self.count, self.total) // max(1, self.total)
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} {self.what}"
                + (f"  {rate:.0f}/s" if rate else ""))
        if self.tty:
            self.stream.write("\r" + text)
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the final count once and end the line."""
        if self.stream is None:
            return
        if self.count != self._shown:
            self._show(time.monotonic())
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
