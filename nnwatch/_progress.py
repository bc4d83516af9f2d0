"""A small progress bar on stderr (no dependency); quiet when disabled."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts work done and redraws at most every 0.2 s.

    A line shows at once (``0/total``), and the first finished unit shows at once too, so
    work whose units take many seconds (a head search: one prompt is hundreds of masked
    prefills) is visibly alive from the start. In a log (stderr not a terminal) a line every
    30 s follows, not a redraw.

    Parameters
    ----------
    total : int
        Units of work expected.
    label : str
        Shown before the bar.
    enabled : bool
        Print anything at all.
    """

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled
        self.done = 0
        self._start = time.perf_counter()
        self._last = 0.0
        self._logged = self._start
        self._tty = sys.stderr.isatty()
        if enabled:
            self._draw(self._start, final=False, force=True)

    def update(self, n: int) -> None:
        """Add ``n`` units.

        Parameters
        ----------
        n : int
            Units just finished.
        """
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.2 or self.done >= self.total):
            first = self.done == n  # the first finished unit: shown at once, also in a log
            self._last = now
            self._draw(now, final=False, force=first)

    def _draw(self, now: float, final: bool, force: bool = False) -> None:
        frac = min(self.done / self.total, 1.0)
        rate = self.done / max(now - self._start, 1e-9)
        bar = "#" * int(frac * 24)
        shown = "starting" if not self.done else f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.2f}/s"
        line = f"{self.label:<24} [{bar:<24}] {self.done}/{self.total} {shown}"
        if self._tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif final or force or now - self._logged >= 30.0:  # logs: a line every 30 s, not a redraw
            self._logged = now
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Print the final line."""
        if self.enabled:
            self._draw(time.perf_counter(), final=True)
