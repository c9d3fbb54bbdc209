"""The learning rate × batch size grid: steps to the target over the grid, how steps and
examples scale with the batch size (Shallue et al. 2019), and the sensitivity of the final
loss to the learning rate (DeepOBS)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns

from .. import measures as M
from ..prose import bs_label
from .style import FULL_RED, MARK_STYLES, PREDICTED, LogNorm, NotApplicable, plt

MAX_LABELLED_ROWS = 24   # learning rates a heatmap names each and writes in; more share its height


def steps_heatmap(cell: pd.DataFrame, target: float, full: int | None = None,
                  lr_mark: tuple[float, str] | None = None) -> plt.Figure:
    """Which learning rate × batch size reaches the target fastest, and which never do?

    Colour: median steps to target over seeds (log scale). "÷" hatched: most runs diverged;
    "n.r.": not reached within the budget; "k/n" below a number: only k of n seeds reached.
    ``lr_mark`` = (η, label): a predicted learning rate (2/λ_max), drawn across the grid at
    its place between the grid's rows (log-interpolated). With a ``group`` column (facet
    values) holding several groups: one panel per group, on one colour scale. Over
    ``MAX_LABELLED_ROWS`` learning rates the rows share the height of that many (colours and
    hatching only, every k-th η named): 128 learning rates stay one screen tall.
    """
    c = cell[cell["target"] == target]
    c = c[c["optimizer"] != "random_search"]
    if c.empty:
        raise NotApplicable(f"no gradient-descent runs with target {target:g}")
    groups = list(dict.fromkeys(c["group"])) if "group" in c and c["group"].nunique() > 1 else [None]
    lrs = sorted(c["learning_rate"].unique())
    bss = sorted(c["batch_size"].unique())
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    dense = len(lrs) > MAX_LABELLED_ROWS   # rows too thin for text: colours only, every k-th η named
    rows_in = min(0.42 * len(lrs), 0.42 * MAX_LABELLED_ROWS)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * (1.25 * len(bss) + 2.2) + 1.6, nrow * max(3.2, rows_in + 1.6)),
                             squeeze=False, constrained_layout=True)
    finite = c[np.isfinite(c["median_steps"])]["median_steps"]
    norm = LogNorm(max(1, finite.min()), max(2, finite.max())) if not finite.empty else None
    cmap = plt.get_cmap("viridis_r")
    im = None
    for ax, grp in zip(axes.flat, groups):
        cg = c if grp is None else c[c["group"] == grp]
        grid = np.full((len(lrs), len(bss)), np.nan)
        for r in cg.itertuples():
            i, j = lrs.index(r.learning_rate), bss.index(r.batch_size)
            if r.status == "reached":
                grid[i, j] = max(r.median_steps, 1)
            _cell(ax, r, i, j, norm, dense)
        im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", origin="lower")
        ax.set_xticks(range(len(bss)), [bs_label(b, full) for b in bss])
        every = math.ceil(len(lrs) / MAX_LABELLED_ROWS)
        ax.set_yticks(range(0, len(lrs), every), [f"{lr:.3g}" for lr in lrs[::every]])
        ax.set_xlim(-0.5, len(bss) - 0.5)
        ax.set_ylim(-0.5, len(lrs) - 0.5)
        ax.grid(False)
        ax.set_xlabel("batch size")
        ax.set_ylabel("learning rate")
        if grp is not None:
            ax.set_title(grp, fontsize=9)
        if lr_mark is not None:
            y, beyond = _grid_position(lr_mark[0], lrs)
            ax.axhline(y, color=PREDICTED, lw=2, ls="--")
            ax.text(-0.45, y, f"{lr_mark[1]}{beyond}", color=PREDICTED, fontsize=8, fontweight="bold",
                    va="bottom" if y < len(lrs) - 1 else "top", ha="left",
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.75, pad=1))
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    if norm is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label=f"median steps to loss {target:g}")
    mark = "; dashed: predicted boundary" if lr_mark is not None else ""
    mark += f"; {len(lrs)} learning rates: colours only" if dense else ""
    fig.suptitle(f"steps to full training loss < {target:g}\n(÷ div.: diverged; n.r.: not reached in budget; "
                 f"↘↗: reached, then diverged or lost{mark})", fontsize=10)
    return fig


def _cell(ax, r, i, j, norm, dense: bool):
    """One cell of the heatmap ``r`` (a row of the cell table) at row ``i``, column ``j``: its hatching
    and, unless ``dense``, its text."""
    if r.status == "reached":
        shade = norm(max(r.median_steps, 1)) if norm else 0.5
        text = f"{r.median_steps:.0f}" + (f"\n{r.n_reached}/{r.n}" if r.n_reached < r.n else "")
        if not dense:
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shade > 0.6 else "black")
    elif r.status.startswith("reached, then"):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#fde6c8", edgecolor="#e67e22", hatch="..", lw=0))
        if not dense:
            ax.text(j, i, "↘↗ div." if r.status.endswith("diverged") else "↘↗ lost", ha="center",
                    va="center", fontsize=8, color="#a04000", fontweight="bold")
    elif r.status == "diverged":
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#f2d7d5", edgecolor=FULL_RED, hatch="///", lw=0))
        if not dense:
            ax.text(j, i, "÷ div.", ha="center", va="center", fontsize=8, color=FULL_RED, fontweight="bold")
    else:
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#eeeeee", lw=0))
        if not dense:
            ax.text(j, i, "n.r.", ha="center", va="center", fontsize=8, color="#555555")


def _grid_position(value: float, grid: list[float]) -> tuple[float, str]:
    """Where ``value`` falls on an axis whose ticks 0, 1, … are the sorted ``grid``, log-interpolated.

    Outside the grid the position is pinned half a row beyond its edge and the note says so.
    """
    if len(grid) == 1:
        return 0.0, "" if value == grid[0] else " (off the grid)"
    lg, lv = np.log(grid), np.log(value)
    if lv < lg[0]:
        return -0.5, f" (below the grid, < {grid[0]:.3g})"
    if lv > lg[-1]:
        return len(grid) - 0.5, f" (above the grid, > {grid[-1]:.3g})"
    return float(np.interp(lv, lg, np.arange(len(grid)))), ""


def scaling(curve: pd.DataFrame, target: float, full: int | None = None, eval_every: int = 1,
            marks: list[tuple[str, float]] | None = None) -> plt.Figure:
    """How do steps and examples to the target change with batch size (Shallue et al. 2019)?

    Each point is the best learning rate of the same grid at that batch size (median over
    seeds; bars: min–max). Dashed: perfect scaling from the smallest batch size, S(B₀)·B₀/B.
    Steps are counted at evaluations every ``eval_every`` steps: the curve cannot go below it.
    ``marks``: (label, batch size) pairs drawn as vertical lines, e.g. B_simple, B_crit, B_noise.
    """
    if curve.empty or curve["batch_size"].nunique() < 2:
        raise NotApplicable("only one batch size was run")
    ok = curve[curve["reached"]]
    if ok.empty:
        raise NotApplicable(f"no batch size reached loss {target:g} at any learning rate")
    groups = list(dict.fromkeys(curve["group"])) if "group" in curve and curve["group"].nunique() > 1 else [None]
    colors = dict(zip(groups, sns.color_palette("deep", len(groups)))) if groups != [None] else {None: "#1f77b4"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6 + 0.22 * len(groups)), constrained_layout=True)
    bs_all = np.array(sorted(curve["batch_size"].unique()), float)
    for ax, what in zip(axes, ("steps", "examples")):
        top = 0.0
        for grp in groups:
            top = _scaling_group(ax, what, curve if grp is None else curve[curve["group"] == grp], grp, groups,
                                 colors[grp], top)
        if groups != [None]:
            ax.plot([], [], "--", color="grey", lw=1, label="dashed: perfect scaling S(B₀)·B₀/B, same colour")
        _scaling_axis(ax, what, marks, bs_all, full, target)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=2 if len(labels) > 2 else len(labels))
    fig.suptitle(f"steps and examples to loss {target:g} against batch size\n"
                 f"({_scaling_budget(curve, groups, eval_every)})", fontsize=11)
    return fig


def _scaling_group(ax, what: str, cg: pd.DataFrame, grp, groups: list, color, top: float) -> float:
    """One group's best-learning-rate points, flags and perfect-scaling line; returns the new top of the data."""
    okg = cg[cg["reached"]]
    name = "best learning rate (median, min–max over seeds)" if grp is None else grp
    if okg.empty:
        ax.plot([], [], "o-", color=color, label=f"{name}: not reached")
        return top
    scale = okg["batch_size"].to_numpy(float) if what == "examples" else 1.0
    y = okg["steps"].to_numpy() * scale
    lo = okg["steps_min"].to_numpy() * scale
    hi = np.where(np.isfinite(okg["steps_max"]), okg["steps_max"], okg["steps"]).astype(float) * scale
    marker = "o" if grp is None else "osD^vP*X"[groups.index(grp) % 8]  # tells overlapping groups apart
    ax.errorbar(okg["batch_size"], y, yerr=[y - lo, hi - y], fmt=f"{marker}-", color=color, capsize=3,
                label=name, ms=6 if grp is None else 8 - groups.index(grp) % 4, alpha=0.9)
    _scaling_flags(ax, what, okg, grp is None or grp == groups[0], grp is None)
    bsg = cg["batch_size"].to_numpy(float)
    perfect = cg["perfect_steps"].to_numpy() * (bsg if what == "examples" else 1.0)
    ax.plot(bsg, perfect, "--", color="grey" if grp is None else color, lw=1, alpha=0.8,
            label="perfect scaling S(B₀)·B₀/B" if grp is None else None)
    top = max(top, np.nanmax(hi), np.nanmax(perfect))
    for r in cg[~cg["reached"]].itertuples():
        ax.plot([r.batch_size], [top * 1.6], marker="v", color=color if grp else FULL_RED)
        ax.annotate("not reached", (r.batch_size, top * 1.6), textcoords="offset points", xytext=(4, 4),
                    fontsize=7, color=FULL_RED)
    return top


def _scaling_flags(ax, what: str, okg: pd.DataFrame, labelled: bool, one_group: bool):
    """Rings on untuned and unresolved optima, and the notes beside points (some seeds not reached, η)."""
    per = (lambda f: f["batch_size"].to_numpy(float)) if what == "examples" else (lambda f: 1.0)
    if "tuned" in okg:
        edge = okg[~okg["tuned"].astype(bool)]
        if not edge.empty:
            ax.plot(edge["batch_size"], edge["steps"].to_numpy() * per(edge), "o", ms=12, mfc="none", mec=FULL_RED,
                    mew=1.6, label="not tuned: optimum at the grid's edge" if labelled else None)
    if "resolved" in okg:  # a refined sweep: an unresolved optimum is only an upper bound
        un = okg[~okg["resolved"].astype(bool)]
        if not un.empty:
            ax.plot(un["batch_size"], un["steps"].to_numpy() * per(un), "o", mfc="white", mec=FULL_RED,
                    mew=1.6, label="optimum not resolved (upper bound)" if labelled else None)
    for r in okg[~np.isfinite(okg["steps_max"])].itertuples():
        yy = r.steps * (r.batch_size if what == "examples" else 1)
        ax.annotate("some seeds n.r.", (r.batch_size, yy), textcoords="offset points", xytext=(4, 8),
                    fontsize=7, color="#555555")
    if one_group:
        for r in okg.itertuples():
            yy = r.steps * (r.batch_size if what == "examples" else 1)
            ax.annotate(f"η={r.learning_rate:.3g}", (r.batch_size, yy), textcoords="offset points",
                        xytext=(4, -12), fontsize=7)


def _scaling_axis(ax, what: str, marks, bs_all: np.ndarray, full: int | None, target: float):
    """The vertical marks (B_crit, …) and the log axes labelled by batch size."""
    for (label, b), style in zip(marks or [], MARK_STYLES):
        # A mark far outside the batch sizes run would squash the data into a corner: name it only.
        inside = bs_all.min() / 10 <= b <= bs_all.max() * 10
        ax.axvline(b if inside else bs_all.min(), color=style[0], ls=style[1], lw=1.6 if inside else 0,
                   label=f"{label} = {b:,.3g}" + ("" if inside else " (off the axis)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(bs_all, [bs_label(int(b), full) for b in bs_all])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"{what} to loss {target:g}")


def _scaling_budget(curve: pd.DataFrame, groups: list, eval_every: int) -> str:
    """The title's second line: learning rates tried per batch size, groups, evaluation interval."""
    n_lrs = curve["n_lrs"].unique()
    budget = f"{n_lrs[0]} learning rates tried per batch size" if len(n_lrs) == 1 else \
        f"UNEQUAL trial budgets: {', '.join(map(str, curve['n_lrs']))} learning rates"
    if "resolved" in curve:
        budget = (f"learning rate refined per batch size ({', '.join(map(str, curve['n_lrs']))} tried); "
                  f"{int(curve['resolved'].sum())} of {len(curve)} optima resolved")
    if groups != [None]:
        budget += "; one colour per swept setting, each at its own best learning rate"
    every = f"; loss evaluated every {eval_every} steps" if eval_every > 1 else ""
    return budget + every


def sensitivity(sens: pd.DataFrame, full: int | None = None, lr_mark: tuple[float, str] | None = None,
                bracket: tuple[float, float, str] | None = None) -> plt.Figure:
    """How much does the final loss depend on the learning rate, per batch size (DeepOBS)?

    y: median final full training loss over seeds divided by the best at that batch size;
    diverged cells are drawn as ✕ on the top line. ``lr_mark`` = (η, label): a predicted
    learning rate (2/λ_max) as a vertical line; ``bracket`` = (lo, hi, label): the measured
    divergence boundary (highest stable, lowest diverged η) as a shaded band. With a
    ``group`` column holding several groups (facet values): one panel each. A batch size
    whose best final loss is at machine precision (``measures.MACHINE_PRECISION_LOSS``) is
    not drawn: a ratio against rounding noise means nothing; the panel says so.
    """
    s = sens[sens["optimizer"] != "random_search"]
    if s["learning_rate"].nunique() < 3:
        raise NotApplicable("fewer than three learning rates were run: the tables give each one's final loss")
    finite = s[np.isfinite(s["relative"])]
    if finite.empty:
        raise NotApplicable("every run diverged: no final loss to compare")
    best = s.groupby([c for c in ("group", "batch_size") if c in s])["loss"].transform("min")
    exact = s[best < M.MACHINE_PRECISION_LOSS]
    s = s[best >= M.MACHINE_PRECISION_LOSS]
    if s.empty:
        raise NotApplicable(f"the best final loss is at machine precision (below {M.MACHINE_PRECISION_LOSS:g}) at "
                            f"every batch size: ratios against it are meaningless (the findings give the final losses)")
    finite = s[np.isfinite(s["relative"])]
    ceiling = max(10.0, finite["relative"].max() * 3) if not finite.empty else 10.0
    groups = list(dict.fromkeys(s["group"])) if "group" in s and sens["group"].nunique() > 1 else [None]
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol + 2.4, 4.2 * nrow), squeeze=False, sharey=True,
                             constrained_layout=True)
    bss = sorted(sens["batch_size"].unique())
    palette = dict(zip(bss, sns.color_palette("rocket", len(bss))))
    for ax, grp in zip(axes.flat, groups):
        sg = s if grp is None else s[s["group"] == grp]
        for bs in bss:
            g = sg[sg["batch_size"] == bs].sort_values("learning_rate")
            if g.empty:
                continue
            y = np.where(np.isfinite(g["relative"]), g["relative"], np.nan)
            ax.plot(g["learning_rate"], y, "o-", color=palette[bs], ms=4)
            d = g[~np.isfinite(g["relative"])]
            ax.plot(d["learning_rate"], [ceiling] * len(d), "x", color=palette[bs], ms=8, mew=2)
        if bracket is not None:
            ax.axvspan(bracket[0], bracket[1], color="#999999", alpha=0.25, lw=0, label=bracket[2])
        if lr_mark is not None:
            ax.axvline(lr_mark[0], color=PREDICTED, lw=2, ls="--", label=lr_mark[1])
        if not np.isfinite(sg["relative"]).all():   # the ✕ line only where something diverged
            ax.axhline(ceiling, color=FULL_RED, lw=0.8, ls=":")
            ax.text(sens["learning_rate"].min(), ceiling * 1.15, "✕ diverged (median seed)", color=FULL_RED,
                    fontsize=8)
        ex = exact if grp is None else exact[exact["group"] == grp]
        if not ex.empty:
            which = ", ".join(bs_label(int(b), full) for b in sorted(ex["batch_size"].unique()))
            ax.text(0.02, 0.03, f"not drawn — batch size {which}: best final loss {ex['loss'].min():.2g} is at "
                    f"machine precision;\nratios against it are meaningless", transform=ax.transAxes, fontsize=7,
                    color="#555555", va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.8, ceiling * 2.2 if not np.isfinite(s["relative"]).all() else finite["relative"].max() * 1.5)
        ax.set_xlabel("learning rate")
        if grp is not None:
            ax.set_title(grp, fontsize=9)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("final loss ÷ best final loss\nat that batch size")
    for bs in bss:
        axes.flat[0].plot([], [], "o-", color=palette[bs], ms=4, label=f"batch size {bs_label(bs, full)}")
    fig.suptitle("learning-rate sensitivity (1 = the best learning rate of its batch size)", fontsize=11)
    # outside: the curves fill the axes
    axes.flat[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)) if len(groups) == 1 else \
        fig.legend(*axes.flat[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    return fig

