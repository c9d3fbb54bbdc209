"""Progress of a sweep: runs trained and runs logged, with an ETA only when it can be honest.

Training and logging overlap: a group's runs are logged while the next group trains, so the
two counts differ and both are shown. A run is *done* once it is in the store (logged); the
bar and the ETA follow that. The ETA is the later of two estimates, each from its own
measured rate: training the runs not yet trained, and logging the runs not yet logged.
Until both rates have been measured it reads ``ETA ?`` rather than a guess.
"""

from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def eta(total: int, trained: int, logged: int, train_s: float, log_s: float) -> float | None:
    """Seconds until every run is logged, or None when a rate is still unknown.

    Args:
        total: runs to do.
        trained, logged: runs trained so far, runs written to the store so far.
        train_s: seconds spent training so far; log_s: seconds since logging began.
    """
    if logged >= total:
        return 0.0
    if logged == 0 or log_s <= 0 or (trained < total and (trained == 0 or train_s <= 0)):
        return None
    left_train = (total - trained) * train_s / trained if trained < total else 0.0
    left_log = (total - logged) * log_s / logged
    return max(left_train, left_log)


class Progress:
    def __init__(self, total: int, label: str, stream=None, min_interval: float = 2.0):
        self.total, self.label = max(total, 1), label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.t_log0 = None        # when the first records reached the writer
        self.last = -1e9
        self.min_interval = min_interval if not self.tty else 0.1

    def logging_started(self):
        if self.t_log0 is None:
            self.t_log0 = time.perf_counter()

    def update(self, trained: int, logged: int, detail: str = "", force: bool = False):
        now = time.perf_counter()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        elapsed = now - self.t0
        left = eta(self.total, trained, logged, elapsed, now - self.t_log0 if self.t_log0 else 0.0)
        eta_s = "?" if left is None else _fmt(left)
        counts = f"trained {trained}/{self.total}, logged {logged}/{self.total}"
        more = f", {detail}" if detail else ""
        if self.tty:
            width = 24
            fill = int(width * logged / self.total)
            bar = "█" * fill + "·" * (width - fill)
            self.stream.write(f"\r{self.label} [{bar}] {counts}{more} · ETA {eta_s}   \x1b[K")
        else:
            self.stream.write(f"{self.label}: {counts}{more} (elapsed {_fmt(elapsed)}, ETA {eta_s})\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
