"""Progress of long runs (audit, audit-peft, bench, gate): one live line on a terminal — step i/n, what runs now,
elapsed time and an ETA from the mean time per finished step — and nothing at all when the stream is not a TTY or
the run was asked for JSON, so logs and piped output stay clean."""
from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """``with Progress(total, "audit") as p: p.step("lora: gradcheck"); ...``. ``total`` counts the calls to step();
    ``quiet`` (e.g. --json) or a non-TTY stream turns every call into a no-op."""

    def __init__(self, total: int, label: str, *, quiet: bool = False, stream: TextIO | None = None,
                 clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = max(int(total), 0)
        self.label = label
        self.clock = clock
        self.start = clock()
        self.done = 0          # finished steps; the running one is number done + 1
        self._started = False  # step() counts the previous step as finished from its second call on
        self._width = 0        # length of the line on screen, to blank what a shorter line leaves

    def step(self, what: str) -> None:
        """Starts the next step (the previous one is counted as finished)."""
        if self._started and self.done < self.total:
            self.done += 1
        self._started = True
        self._show(what)

    def note(self, what: str) -> None:
        """Changes the text of the running step without counting a step."""
        self._show(what)

    def _show(self, what: str) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.start
        eta = f", ETA {_clock(elapsed / self.done * (self.total - self.done))}" if self.done else ""
        line = f"{self.label} {min(self.done + 1, self.total)}/{self.total} [{_clock(elapsed)}{eta}] {what}"
        cols = shutil.get_terminal_size((100, 20)).columns
        line = line[: max(cols - 1, 20)]
        self.stream.write("\r" + line + " " * max(self._width - len(line), 0))
        self.stream.flush()
        self._width = len(line)

    def close(self, summary: str | None = None) -> None:
        """Ends the live line (with a final summary when given)."""
        if not self.enabled:
            return
        if summary is not None:
            line = f"{self.label}: {summary} in {_clock(self.clock() - self.start)}"
            self.stream.write("\r" + line + " " * max(self._width - len(line), 0) + "\n")
        elif self._width:
            self.stream.write("\n")
        self.stream.flush()
        self._width = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
