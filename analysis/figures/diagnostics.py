"""What the diagnostics measured over training: the sharpness against the stability bound."""

from __future__ import annotations

import pandas as pd

from bpresearch import keys as R

from .. import measures as M
from .style import FULL_RED, NotApplicable, line_colors, pick_lines, plt


def edge_of_stability(curves: pd.DataFrame, eos: pd.DataFrame, bound_label: str = "2/η") -> plt.Figure:
    """Does full-batch training stay below the stability bound 2/η (Cohen et al. 2021)?

    One line per learning rate: the sharpness λ_max of the full training loss against the
    step (median over seeds; log y), with a dashed horizontal line at 2/η in the same
    colour. A line that meets its dashed line is training at the edge of stability;
    ✕: the run diverged there.

    Args:
        curves: tidy curves with ``sharpness``.
        eos: ``sharpness.edge_of_stability`` (the full-batch runs measured over training).
        bound_label: how the bound is written ("2/η", or "(2+2β)/η" with momentum).
    """
    if eos.empty:
        raise NotApplicable("no full-batch run has sharpness measured after step 0 (it is measured over "
                            "training in full-batch runs only, every diagnostics.every steps)")
    c = curves[(curves["key"] == R.SHARPNESS) & curves["run_id"].isin(eos["run_id"]) & (curves["value"] > 0)]
    c = c.merge(eos[M.RUN_COLS + ["diverged", "bound"]], on="run_id")
    # At most MAX_LINES: the largest η (nearest 2/λ_max) and the first that diverged, the rest spread; colours
    # by rank from a qualitative palette, so that neighbours near the bound differ in hue.
    every = sorted(eos["learning_rate"].unique())
    lrs = pick_lines(every, every[-3:] + sorted(eos[eos["diverged"]]["learning_rate"].unique())[:1])
    colors = line_colors(lrs)
    c = c[c["learning_rate"].isin(lrs)]
    eos = eos[eos["learning_rate"].isin(lrs)]
    fig, ax = plt.subplots(figsize=(8.8, 4.8), constrained_layout=True)
    b = M.band(c, ["optimizer", "learning_rate", "bound"], "step", "value")
    lo, hi = c["value"].min(), c["value"].max()
    n_seeds = eos.groupby("learning_rate")["seed"].nunique()
    for (opt, lr, bound), g in b.groupby(["optimizer", "learning_rate", "bound"]):
        # Fewer seeds than elsewhere: the others diverged before a second measurement.
        few = f"; {n_seeds[lr]} of {n_seeds.max()} seeds" if n_seeds[lr] < n_seeds.max() else ""
        ax.plot(g["step"], g["median"], color=colors[lr], lw=1.6,
                label=f"η={lr:.3g}  ({bound_label} = {bound:.3g}{few})")
        if g["n"].max() > 1:
            ax.fill_between(g["step"], g["lo"], g["hi"], color=colors[lr], alpha=0.15, lw=0)
        ax.axhline(bound, color=colors[lr], ls="--", lw=1.1)
        lo, hi = min(lo, bound), max(hi, bound)
    for r in eos[eos["diverged"]].itertuples():
        g = c[c["run_id"] == r.run_id]
        ax.plot(g["step"].iloc[-1:], g["value"].iloc[-1:], "x", color=FULL_RED, ms=8, mew=2)
    # Keep every dashed line in view, but no more than three decades beyond the measured sharpness.
    dlo, dhi = c["value"].min(), c["value"].max()
    ax.set_yscale("log")
    ax.set_ylim(max(lo, dlo / 1e3) / 1.5, min(hi, dhi * 1e3) * 1.5)
    ax.set_xlabel("step (updates)")
    ax.set_ylabel("sharpness λ_max of the full training loss")
    seeds = eos["seed"].nunique()
    spread = f"median over {seeds} seeds, band min–max" if seeds > 1 else "one seed"
    drawn = f"; {len(lrs)} of {len(every)} η drawn" if len(lrs) < len(every) else ""
    ax.set_title(f"full batch: sharpness against the stability bound {bound_label} (dashed, same colour)\n"
                 f"({spread}; ✕: diverged{drawn})", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig

