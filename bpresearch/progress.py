"""Progress for long commands: a one-line bar with an ETA on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, total: int, label: str, stream=None, min_interval: float = 2.0):
        self.total, self.label = max(total, 1), label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last = -1e9
        self.min_interval = min_interval if not self.tty else 0.1

    def update(self, done: int, detail: str = "", force: bool = False):
        now = time.perf_counter()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed / done * (self.total - done) if done else float("nan")
        eta_s = _fmt(eta) if done else "?"
        if self.tty:
            width = 24
            fill = int(width * done / self.total)
            bar = "█" * fill + "·" * (width - fill)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {detail} ETA {eta_s}   \x1b[K")
        else:
            self.stream.write(f"{self.label}: {done}/{self.total} {detail} (elapsed {_fmt(elapsed)}, ETA {eta_s})\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
