"""Curves over training: the loss per learning rate, batch against stochastic training, and
random search against gradient descent."""

from __future__ import annotations

import math

import matplotlib.patheffects as pe
import numpy as np
import pandas as pd
import seaborn as sns

from bpresearch import keys as R

from .. import measures as M
from ..groups import full_batch_size
from ..prose import bs_label
from .style import (
    FULL_RED,
    MAX_LINES,
    STOCHASTIC_BLUE,
    NotApplicable,
    line_colors,
    lr_scale,
    pick_lines,
    plt,
)


def loss_curves(curves: pd.DataFrame, runs: pd.DataFrame, key: str = R.FULL_TRAIN_LOSS,
                target: float | None = None, best: dict | None = None) -> plt.Figure:
    """How does the loss fall for each learning rate? One panel per batch size.

    Lines are the median over seeds, bands span min to max; log y scale. At most
    ``MAX_LINES`` learning rates per panel (the best and its neighbours, the smallest
    diverged, the ends of the range, the rest spread between: the title of each panel says
    how many are drawn), each labelled by η in the panel's legend below it, in colours that
    tell neighbours apart. The y axis stops at 10× the starting loss: a diverged run's line
    ends there with ✕. ``best``: batch size -> (best η, the slowest best run's steps over the
    targets); the step axis of that panel is cut at 3× those steps (the whole budget without it).
    Over ``MAX_LINES`` learning rates in all, every one is drawn instead, coloured on a log
    scale with one colour bar (a legend of a hundred entries cannot be read), the best outlined.
    """
    gd = runs[runs["optimizer"] != "random_search"]
    c = curves[(curves["key"] == key) & (curves["value"] > 0)].merge(gd[M.RUN_COLS], on="run_id")
    if c.empty:
        raise NotApplicable(f"no {key} curves were logged for these runs")
    full = full_batch_size(runs)
    panels = sorted(c["batch_size"].unique())
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 4.6 * nrow), squeeze=False, constrained_layout=True)
    b = M.band(c, ["batch_size", "optimizer", "learning_rate"], "step", "value")
    diverged = set(gd[gd["diverged"]].groupby(["batch_size", "learning_rate"]).size().index)
    lrs = sorted(b["learning_rate"].unique())
    scale = lr_scale(lrs) if len(lrs) > MAX_LINES else None   # too many for a legend: a colour bar
    for ax, bs in zip(axes.flat, panels):
        _loss_panel(ax, b[b["batch_size"] == bs], bs, full, (best or {}).get(int(bs)), diverged, target, scale)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    if scale is not None:
        fig.colorbar(scale, ax=axes.ravel().tolist(), label="learning rate η (log scale)", shrink=0.9)
    for ax in axes[:, 0]:
        ax.set_ylabel(key.replace("_", " "))
    seeds = runs["seed"].nunique()
    band_note = f"; band: min–max over {seeds} seeds" if seeds > 1 and scale is None else \
        f" over {seeds} seeds" if seeds > 1 else ""
    tnote = f"; dotted: target {target:g}" if target is not None else ""
    fig.suptitle(f"{key.replace('_', ' ')} by learning rate η (median{band_note}{tnote}; ✕ diverged)", fontsize=11)
    return fig


def _loss_panel(ax, b: pd.DataFrame, bs: int, full: int | None, best, diverged: set, target: float | None,
                scale=None):
    """One batch size's curves, clipped at 10× the starting loss, step axis zoomed: at most ``MAX_LINES``
    with a legend; or, with ``scale`` (``style.lr_scale``), every learning rate in its colour on that scale."""
    lrs = sorted(b["learning_rate"].unique())
    keep = []
    if best is not None and best[0] in lrs:
        i = lrs.index(best[0])
        keep = lrs[max(i - 1, 0):i + 2]
    div = [lr for lr in lrs if (bs, lr) in diverged]
    if scale is not None:
        shown, keep = lrs, [best[0]] if keep else []   # every line; the best outlined
        colors = {lr: scale.to_rgba(lr) for lr in lrs}
    else:
        shown = pick_lines(lrs, keep + div[:1])
        colors = line_colors(shown)
    start = b[b["step"] == b["step"].min()]["median"]
    top = 10 * float(start.max()) if not start.empty else float(b["median"].max())
    for i, lr in enumerate(shown):
        g = b[b["learning_rate"] == lr].sort_values("step")
        y = g["median"].clip(upper=top)
        if scale is not None:   # many lines: thin and solid, the best one thick and outlined
            star = bool(keep) and lr == best[0]
            ax.plot(g["step"], y, color=colors[lr], lw=2.4 if star else 0.9, zorder=3 if star else 2,
                    path_effects=[pe.withStroke(linewidth=3.6, foreground="black")] if star else None)
        else:
            ls = "-" if i % 2 == 0 else (0, (4, 1.5))
            ax.plot(g["step"], y, color=colors[lr], lw=1.5, ls=ls,
                    label=f"η={lr:.3g}" + (" ★" if keep and lr == best[0] else ""))
        if g["n"].max() > 1 and scale is None:
            ax.fill_between(g["step"], g["lo"].clip(upper=top), g["hi"].clip(upper=top), color=colors[lr],
                            alpha=0.15, lw=0)
        if (bs, lr) in diverged:
            over = g[g["median"] >= top]
            at = over.iloc[0] if not over.empty else g.iloc[-1]
            ax.plot([at["step"]], [min(at["median"], top)], "x", color=colors[lr], ms=9, mew=2.2)
    if target is not None:
        ax.axhline(target, color="black", ls=":", lw=1)
    ax.set_yscale("log")
    right = float(b["step"].max())
    if best is not None and np.isfinite(best[1]):
        right = min(right, max(3 * best[1], 10))
        ax.set_xlim(0, right)
    seen = b[b["learning_rate"].isin(shown) & (b["step"] <= right)]
    low = np.nanmin(seen[["median", "lo"]].to_numpy(float)) if not seen.empty else np.nan
    low = min(low, target) if target is not None and np.isfinite(low) else low
    ax.set_ylim(low / 1.5 if np.isfinite(low) and low > 0 else None, top * 1.3)
    title = f"batch size {bs_label(bs, full)}"
    if len(shown) < len(lrs):
        title += f"\n({len(shown)} of {len(lrs)} η drawn)"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step (updates)")
    if scale is not None:
        if keep:
            ax.text(0.98, 0.98, f"outlined: best η = {best[0]:.3g}", transform=ax.transAxes, ha="right", va="top",
                    fontsize=8)
        return
    ax.legend(fontsize=7.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
              title="★ best η for the first target" if keep else None, title_fontsize=7.5)


def batch_vs_stochastic(curves: pd.DataFrame, runs: pd.DataFrame, noise: pd.DataFrame) -> plt.Figure:
    """The seed's lost figure: batch (smooth, red) against stochastic (noisy, blue) training.

    The minibatch training loss at every step of one seed, full batch against batch size 1,
    one panel per learning rate (at most three, where neither run diverged); the legend gives
    each curve's noise (std of Δ log loss).
    """
    full = full_batch_size(runs)
    if full is None or not (runs["batch_size"] == 1).any():
        raise NotApplicable("needs runs with batch size 1 and with the full batch")
    gd = runs[runs["optimizer"] != "random_search"]
    lrs = sorted(set(gd[gd["batch_size"] == 1]["learning_rate"]) & set(gd[gd["batch_size"] == full]["learning_rate"]))
    if not lrs:
        raise NotApplicable("no learning rate was run at both batch size 1 and the full batch")
    if curves[curves["key"] == R.TRAIN_LOSS].empty:
        raise NotApplicable("no train_loss curves were logged for these runs")
    seed = int(gd["seed"].min())
    pair = gd[(gd["seed"] == seed) & gd["batch_size"].isin([1, full])]
    stable = [lr for lr in lrs if not pair[pair["learning_rate"] == lr]["diverged"].any()]
    # At most three panels: the smallest, middle and largest learning rate at which neither diverged.
    pick = stable or lrs
    lrs = sorted({pick[0], pick[len(pick) // 2], pick[-1]})
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.4 * len(lrs), 3.9), squeeze=False, constrained_layout=True)
    nz = noise.set_index("run_id")["noise"]
    for ax, lr in zip(axes.flat, lrs):
        for bs, color, name in ((1, STOCHASTIC_BLUE, "stochastic: batch size 1"),
                                (full, FULL_RED, f"batch: full ({full})")):
            r = gd[(gd["batch_size"] == bs) & (gd["learning_rate"] == lr) & (gd["seed"] == seed)]
            if r.empty:
                continue
            rid = r["run_id"].iloc[0]
            c = curves[(curves["run_id"] == rid) & (curves["key"] == R.TRAIN_LOSS) & (curves["value"] > 0)]
            lw = 0.7 if bs == 1 else 2.0
            n = nz.get(rid, np.nan)
            ax.plot(c["step"], c["value"], color=color, lw=lw, label=f"{name} (noise {n:.3g})")
        ax.set_yscale("log")
        ax.set_xlabel("step (updates)")
        ax.set_ylabel("training loss on the step's batch")
        ax.set_title(f"learning rate {lr:.3g}, seed {seed}")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    fig.suptitle("batch training falls smoothly, stochastic training noisily "
                 "(noise: std of step-to-step change of log loss)")
    return fig


def random_vs_gd(bsf: pd.DataFrame, target: float | None = None) -> plt.Figure:
    """Random search or gradient descent: which finds a low loss with fewer loss evaluations?

    Best full training loss so far against evaluations (= steps for both), median over seeds
    with a min–max band, log y.
    """
    if bsf.empty:
        raise NotApplicable("no full_train_loss curves were logged for these runs")
    if "random_search" not in set(bsf["optimizer"]) or set(bsf["optimizer"]) == {"random_search"}:
        raise NotApplicable("needs both random-search and gradient-descent runs")
    b = M.band(bsf[bsf["best"] > 0], ["optimizer", "learning_rate"], "evaluations", "best")
    fig, ax = plt.subplots(figsize=(10, 4.6), constrained_layout=True)
    gd_lrs = sorted(b[b["optimizer"] != "random_search"]["learning_rate"].unique())
    blues = dict(zip(gd_lrs, sns.color_palette("Blues", len(gd_lrs) + 2)[2:]))
    for (opt, lr), g in b.groupby(["optimizer", "learning_rate"]):
        rs = opt == "random_search"
        color = "black" if rs else blues[lr]
        label = "random search (keep the best draw)" if rs else f"gradient descent ({opt}), η={lr:g}"
        ax.plot(g["evaluations"], g["median"], color=color, lw=2 if rs else 1.5, ls="--" if rs else "-", label=label)
        ax.fill_between(g["evaluations"], g["lo"], g["hi"], color=color, alpha=0.12, lw=0)
    if target is not None:
        ax.axhline(target, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("loss evaluations (= steps: one draw or one gradient each)")
    ax.set_ylabel("best full training loss so far")
    seeds = bsf["seed"].nunique()
    ax.set_title(f"random search against gradient descent\n(median; band: min–max over {seeds} seeds)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig

