"""How every figure looks: the matplotlib backend and theme, the colours that carry a meaning,
and ``NotApplicable``.

A figure that the data cannot answer raises ``NotApplicable`` with a one-line reason,
which the report prints where the figure would be. Every figure takes the frames of
``analysis.load`` and the measures; nothing in ``analysis.figures`` reads the store.
"""

from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: reports are built without a display

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
FULL_RED, STOCHASTIC_BLUE = "#c0392b", "#2e6fd1"       # the seed's lost figure: red batch, blue stochastic
FORWARD_GREEN, BACKWARD_RED = "#1e8449", "#c0392b"     # the seed's graph: green values, red gradients
PREDICTED = "#d35400"                                   # predictions from the diagnostics: orange
MARK_STYLES = [(PREDICTED, "--"), ("#7d3c98", "-."), ("#117a65", ":")]  # vertical marks, told apart in grey too
VERDICT_COLORS = {"converged": "#1f77b4", "slow": "#ff9f1c", "oscillates": "#8e44ad", "diverged": "#c0392b"}


class NotApplicable(Exception):
    """This figure does not apply to (or cannot be drawn from) the data; str() says why."""


def lr_colors(lrs) -> dict:
    """One viridis colour per learning rate, on a log scale."""
    lrs = sorted(lrs)
    cmap = plt.get_cmap("viridis")
    norm = LogNorm(min(lrs), max(lrs)) if len(lrs) > 1 and min(lrs) > 0 else None
    return {lr: cmap(0.9 * norm(lr)) if norm else cmap(0.3) for lr in lrs}


def lr_scale(lrs):
    """A colour scale of learning rates (viridis, log): ``to_rgba(lr)`` colours a line, ``fig.colorbar`` draws it."""
    lo, hi = min(lrs), max(lrs)
    norm = LogNorm(lo, hi if hi > lo else lo * 10) if lo > 0 else None
    return ScalarMappable(norm=norm, cmap="viridis")


MAX_LINES = 8   # lines per panel: more cannot be told apart


def pick_lines(values, keep=(), k: int = MAX_LINES) -> list:
    """At most ``k`` of ``values`` (sorted): every one in ``keep`` first, the rest spread evenly over the range."""
    values = sorted(values)
    if len(values) <= k:
        return values
    chosen = [v for v in values if v in set(keep)][:k]
    spread = [values[i] for i in np.linspace(0, len(values) - 1, k).round().astype(int)]
    for v in [spread[0], spread[-1], *spread[1:-1], *values]:   # both ends first
        if len(chosen) >= k:
            break
        if v not in chosen:
            chosen.append(v)
    return sorted(chosen)


def line_colors(values) -> dict:
    """One colour per value, in order, from a qualitative palette: neighbours differ in hue, not in shade."""
    values = sorted(values)
    palette = sns.color_palette("colorblind", 10)
    palette = [palette[i] for i in (0, 1, 2, 3, 4, 8, 9, 5, 6, 7)]   # blue, orange, green, red, purple, …
    return {v: palette[i % len(palette)] for i, v in enumerate(values)}
