"""A small progress bar on stderr (no dependency); quiet when disabled."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts work done and redraws at most every 0.2 s.

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
            self._last = now
            self._draw(now, final=False)

    def _draw(self, now: float, final: bool) -> None:
        frac = min(self.done / self.total, 1.0)
        rate = self.done / max(now - self._start, 1e-9)
        bar = "#" * int(frac * 24)
        shown = f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.2f}/s"
        line = f"{self.label:<24} [{bar:<24}] {self.done}/{self.total} {shown}"
        if self._tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif final or now - self._logged >= 30.0:  # logs: a line every 30 s, not a redraw
            self._logged = now
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Print the final line."""
        if self.enabled:
            self._draw(time.perf_counter(), final=True)
