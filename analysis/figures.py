"""Figures, one function per question; each returns a matplotlib Figure.

A figure that the data cannot answer raises ``NotApplicable`` with a one-line reason,
which the report prints where the figure would be. Inputs are the frames of
``analysis.load`` and ``analysis.measures``; nothing here reads the store.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only: reports are built without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from bpresearch import keys as R  # noqa: E402

from . import measures as M  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
FULL_RED, STOCHASTIC_BLUE = "#c0392b", "#2e6fd1"       # the seed's lost figure: red batch, blue stochastic
FORWARD_GREEN, BACKWARD_RED = "#1e8449", "#c0392b"     # the seed's graph: green values, red gradients
PREDICTED = "#d35400"                                   # predictions from the diagnostics: orange
MARK_STYLES = [(PREDICTED, "--"), ("#7d3c98", "-."), ("#117a65", ":")]  # vertical marks, told apart in grey too
VERDICT_COLORS = {"converged": "#1f77b4", "slow": "#ff9f1c", "oscillates": "#8e44ad", "diverged": "#c0392b"}


class NotApplicable(Exception):
    """This figure does not apply to (or cannot be drawn from) the data; str() says why."""


def _bs_label(bs: int, full: int | None) -> str:
    return f"full ({bs})" if full is not None and bs == full else str(bs)


def full_batch_size(runs: pd.DataFrame) -> int | None:
    """The batch size that means "the whole training set", if any run used it."""
    if "full_batch" in runs and runs["full_batch"].any():
        return int(runs.loc[runs["full_batch"], "batch_size"].iloc[0])
    return None


def _lr_colors(lrs):
    lrs = sorted(lrs)
    cmap = plt.get_cmap("viridis")
    norm = LogNorm(min(lrs), max(lrs)) if len(lrs) > 1 and min(lrs) > 0 else None
    return {lr: cmap(0.9 * norm(lr)) if norm else cmap(0.3) for lr in lrs}


def loss_curves(curves: pd.DataFrame, runs: pd.DataFrame, key: str = R.FULL_TRAIN_LOSS,
                target: float | None = None) -> plt.Figure:
    """How does the loss fall for each learning rate? One panel per batch size.

    Lines are the median over seeds, bands span min to max; log y scale. Curves of
    diverged runs stop at their divergence step.
    """
    gd = runs[runs["optimizer"] != "random_search"]
    c = curves[(curves["key"] == key) & (curves["value"] > 0)].merge(gd[M.RUN_COLS], on="run_id")
    if c.empty:
        raise NotApplicable(f"no {key} curves were logged for these runs")
    full = full_batch_size(runs)
    panels = sorted(c["batch_size"].unique())
    colors = _lr_colors(c["learning_rate"].unique())
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol + 1.6, 3.6 * nrow), squeeze=False,
                             sharey=True, constrained_layout=True)
    b = M.band(c, ["batch_size", "optimizer", "learning_rate"], "step", "value")
    for ax, bs in zip(axes.flat, panels):
        for (opt, lr), g in b[b["batch_size"] == bs].groupby(["optimizer", "learning_rate"]):
            ax.plot(g["step"], g["median"], color=colors[lr], lw=1.3, label=f"{lr:.3g}")
            if g["n"].max() > 1:
                ax.fill_between(g["step"], g["lo"], g["hi"], color=colors[lr], alpha=0.18, lw=0)
        if target is not None:
            ax.axhline(target, color="black", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"batch size {_bs_label(bs, full)}")
        ax.set_xlabel("step (updates)")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(key.replace("_", " "))
    handles = [plt.Line2D([], [], color=colors[lr], lw=2) for lr in sorted(colors)]
    # outside, beside the panels and below the title: it covers neither curves nor title
    fig.legend(handles, [f"{lr:.3g}" for lr in sorted(colors)], title="learning rate", loc="outside right center")
    seeds = runs["seed"].nunique()
    band_note = f"; band: min–max over {seeds} seeds" if seeds > 1 else ""
    tnote = f"; dotted: target {target:g}" if target is not None else ""
    fig.suptitle(f"{key.replace('_', ' ')} by learning rate\n(median{band_note}{tnote})", fontsize=11)
    return fig


def steps_heatmap(cell: pd.DataFrame, target: float, full: int | None = None,
                  lr_mark: tuple[float, str] | None = None) -> plt.Figure:
    """Which learning rate × batch size reaches the target fastest, and which never do?

    Colour: median steps to target over seeds (log scale). "÷" hatched: most runs diverged;
    "n.r.": not reached within the budget; "k/n" below a number: only k of n seeds reached.
    ``lr_mark`` = (η, label): a predicted learning rate (2/λ_max), drawn across the grid at
    its place between the grid's rows (log-interpolated). With a ``group`` column (facet
    values) holding several groups: one panel per group, on one colour scale.
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
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * (1.25 * len(bss) + 2.2) + 1.6, nrow * (0.42 * len(lrs) + 1.6)),
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
                shade = norm(max(r.median_steps, 1)) if norm else 0.5
                text = f"{r.median_steps:.0f}" + (f"\n{r.n_reached}/{r.n}" if r.n_reached < r.n else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if shade > 0.6 else "black")
            elif r.status.startswith("reached, then"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#fde6c8", edgecolor="#e67e22",
                                           hatch="..", lw=0))
                ax.text(j, i, "↘↗ div." if r.status.endswith("diverged") else "↘↗ lost", ha="center",
                        va="center", fontsize=8, color="#a04000", fontweight="bold")
            elif r.status == "diverged":
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#f2d7d5", edgecolor=FULL_RED,
                                           hatch="///", lw=0))
                ax.text(j, i, "÷ div.", ha="center", va="center", fontsize=8, color=FULL_RED, fontweight="bold")
            else:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#eeeeee", lw=0))
                ax.text(j, i, "n.r.", ha="center", va="center", fontsize=8, color="#555555")
        im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", origin="lower")
        ax.set_xticks(range(len(bss)), [_bs_label(b, full) for b in bss])
        ax.set_yticks(range(len(lrs)), [f"{lr:.3g}" for lr in lrs])
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
    fig.suptitle(f"steps to full training loss < {target:g}\n(÷ div.: diverged; n.r.: not reached in budget; "
                 f"↘↗: reached, then diverged or lost{mark})", fontsize=10)
    return fig


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
            cg = curve if grp is None else curve[curve["group"] == grp]
            okg = cg[cg["reached"]]
            name = "best learning rate (median, min–max over seeds)" if grp is None else grp
            if okg.empty:
                ax.plot([], [], "o-", color=colors[grp], label=f"{name}: not reached")
                continue
            scale = okg["batch_size"].to_numpy(float) if what == "examples" else 1.0
            y = okg["steps"].to_numpy() * scale
            lo = okg["steps_min"].to_numpy() * scale
            hi = np.where(np.isfinite(okg["steps_max"]), okg["steps_max"], okg["steps"]).astype(float) * scale
            marker = "o" if grp is None else "osD^vP*X"[groups.index(grp) % 8]  # tells overlapping groups apart
            ax.errorbar(okg["batch_size"], y, yerr=[y - lo, hi - y], fmt=f"{marker}-", color=colors[grp], capsize=3,
                        label=name, ms=6 if grp is None else 8 - groups.index(grp) % 4, alpha=0.9)
            if "tuned" in okg:
                edge = okg[~okg["tuned"].astype(bool)]
                if not edge.empty:
                    ye = edge["steps"].to_numpy() * (edge["batch_size"].to_numpy(float) if what == "examples"
                                                     else 1.0)
                    ax.plot(edge["batch_size"], ye, "o", ms=12, mfc="none", mec=FULL_RED, mew=1.6,
                            label="not tuned: optimum at the grid's edge" if grp is None or grp == groups[0]
                            else None)
            if "resolved" in okg:  # a refined sweep: an unresolved optimum is only an upper bound
                un = okg[~okg["resolved"].astype(bool)]
                if not un.empty:
                    s_un = un["batch_size"].to_numpy(float) if what == "examples" else 1.0
                    ax.plot(un["batch_size"], un["steps"].to_numpy() * s_un, "o", mfc="white", mec=FULL_RED,
                            mew=1.6, label="optimum not resolved (upper bound)" if grp is None or grp == groups[0]
                            else None)
            for r in okg[~np.isfinite(okg["steps_max"])].itertuples():
                yy = r.steps * (r.batch_size if what == "examples" else 1)
                ax.annotate("some seeds n.r.", (r.batch_size, yy), textcoords="offset points", xytext=(4, 8),
                            fontsize=7, color="#555555")
            if grp is None:
                for r in okg.itertuples():
                    yy = r.steps * (r.batch_size if what == "examples" else 1)
                    ax.annotate(f"η={r.learning_rate:.3g}", (r.batch_size, yy), textcoords="offset points",
                                xytext=(4, -12), fontsize=7)
            bsg = cg["batch_size"].to_numpy(float)
            perfect = cg["perfect_steps"].to_numpy() * (bsg if what == "examples" else 1.0)
            ax.plot(bsg, perfect, "--", color="grey" if grp is None else colors[grp], lw=1, alpha=0.8,
                    label="perfect scaling S(B₀)·B₀/B" if grp is None else None)
            top = max(top, np.nanmax(hi), np.nanmax(perfect))
            for r in cg[~cg["reached"]].itertuples():
                ax.plot([r.batch_size], [top * 1.6], marker="v", color=colors[grp] if grp else FULL_RED)
                ax.annotate("not reached", (r.batch_size, top * 1.6), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=FULL_RED)
        if groups != [None]:
            ax.plot([], [], "--", color="grey", lw=1, label="dashed: perfect scaling S(B₀)·B₀/B, same colour")
        for (label, b), style in zip(marks or [], MARK_STYLES):
            # A mark far outside the batch sizes run would squash the data into a corner: name it only.
            inside = bs_all.min() / 10 <= b <= bs_all.max() * 10
            ax.axvline(b if inside else bs_all.min(), color=style[0], ls=style[1], lw=1.6 if inside else 0,
                       label=f"{label} = {b:,.3g}" + ("" if inside else " (off the axis)"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(bs_all, [_bs_label(int(b), full) for b in bs_all])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{what} to loss {target:g}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=2 if len(labels) > 2 else len(labels))
    n_lrs = curve["n_lrs"].unique()
    budget = f"{n_lrs[0]} learning rates tried per batch size" if len(n_lrs) == 1 else \
        f"UNEQUAL trial budgets: {', '.join(map(str, curve['n_lrs']))} learning rates"
    if "resolved" in curve:
        budget = (f"learning rate refined per batch size ({', '.join(map(str, curve['n_lrs']))} tried); "
                  f"{int(curve['resolved'].sum())} of {len(curve)} optima resolved")
    if groups != [None]:
        budget += "; one colour per swept setting, each at its own best learning rate"
    every = f"; loss evaluated every {eval_every} steps" if eval_every > 1 else ""
    fig.suptitle(f"steps and examples to loss {target:g} against batch size\n({budget}{every})", fontsize=11)
    return fig


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
    if s["learning_rate"].nunique() < 2:
        raise NotApplicable("fewer than two learning rates were run")
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
        ax.axhline(ceiling, color=FULL_RED, lw=0.8, ls=":")
        ax.text(sens["learning_rate"].min(), ceiling * 1.15, "✕ diverged (median seed)", color=FULL_RED, fontsize=8)
        ex = exact if grp is None else exact[exact["group"] == grp]
        if not ex.empty:
            which = ", ".join(_bs_label(int(b), full) for b in sorted(ex["batch_size"].unique()))
            ax.text(0.02, 0.03, f"not drawn — batch size {which}: best final loss {ex['loss'].min():.2g} is at "
                    f"machine precision;\nratios against it are meaningless", transform=ax.transAxes, fontsize=7,
                    color="#555555", va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.8, ceiling * 2.2)
        ax.set_xlabel("learning rate")
        if grp is not None:
            ax.set_title(grp, fontsize=9)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("final loss ÷ best final loss\nat that batch size")
    for bs in bss:
        axes.flat[0].plot([], [], "o-", color=palette[bs], ms=4, label=f"batch size {_bs_label(bs, full)}")
    fig.suptitle("learning-rate sensitivity (1 = the best learning rate of its batch size)", fontsize=11)
    # outside: the curves fill the axes
    axes.flat[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)) if len(groups) == 1 else \
        fig.legend(*axes.flat[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    return fig


def edge_of_stability(curves: pd.DataFrame, eos: pd.DataFrame, bound_label: str = "2/η") -> plt.Figure:
    """Does full-batch training stay below the stability bound 2/η (Cohen et al. 2021)?

    One line per learning rate: the sharpness λ_max of the full training loss against the
    step (median over seeds; log y), with a dashed horizontal line at 2/η in the same
    colour. A line that meets its dashed line is training at the edge of stability;
    ✕: the run diverged there.

    Args:
        curves: tidy curves with ``sharpness``.
        eos: ``predictions.edge_of_stability`` (the full-batch runs measured over training).
        bound_label: how the bound is written ("2/η", or "(2+2β)/η" with momentum).
    """
    if eos.empty:
        raise NotApplicable("no full-batch run has sharpness measured after step 0 (it is measured over "
                            "training in full-batch runs only, every diagnostics.every steps)")
    c = curves[(curves["key"] == R.SHARPNESS) & curves["run_id"].isin(eos["run_id"]) & (curves["value"] > 0)]
    c = c.merge(eos[M.RUN_COLS + ["diverged", "bound"]], on="run_id")
    # Colours by rank, not by log η: the lines worth telling apart are neighbours near 2/λ_max,
    # which a log-scaled colormap would paint almost alike. Plasma stops short of its pale yellow.
    lrs = sorted(eos["learning_rate"].unique())
    cmap = plt.get_cmap("plasma")
    colors = {lr: cmap(0.85 * i / max(len(lrs) - 1, 1)) for i, lr in enumerate(lrs)}
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
    ax.set_title(f"full batch: sharpness against the stability bound {bound_label} (dashed, same colour)\n"
                 f"({spread}; ✕: diverged)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


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


_GRAPH_POS = {"x": (0.0, 2.0), "y": (0.0, 1.0), "z": (0.0, 0.0), "q": (1.3, 1.5), "f": (2.6, 0.75)}
_GRAPH_EDGES = [("x", "q"), ("y", "q"), ("q", "f"), ("z", "f")]
_GRAPH_OPS = {"q": "q = x + y", "f": "f = q · z"}


def seed_graph(example: dict) -> plt.Figure:
    """The seed's computational graph f = (x+y)·z with every node's value and gradient.

    Args:
        example: the result of ``bpresearch.core.seed.seed_example`` (its ``nodes``, ``loss``,
            ``loss_grads``, ``target``).

    Returns:
        Nodes x, y, z, q, f and their edges; green: value (forward pass), red: ∂f/∂node
        (backward pass); a note gives the loss and ∂Loss/∂x,y,z at that point.
    """
    fig, ax = plt.subplots(figsize=(8.5, 4.6), constrained_layout=True)
    draw_seed_graph(ax, example)
    return fig


def draw_seed_graph(ax: plt.Axes, example: dict):
    """``seed_graph``'s drawing, into ``ax`` (so that a larger figure can hold it)."""
    nodes = example["nodes"]
    for a, b in _GRAPH_EDGES:
        (x0, y0), (x1, y1) = _GRAPH_POS[a], _GRAPH_POS[b]
        ax.annotate("", (x1 - 0.33, y1 + (y0 - y1) * 0.1), (x0 + 0.33, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#444444", lw=1.4))
    for name, (x, y) in _GRAPH_POS.items():
        ax.add_patch(FancyBboxPatch((x - 0.32, y - 0.3), 0.64, 0.6, boxstyle="round,pad=0.02",
                                    facecolor="white", edgecolor="#333333", lw=1.5))
        ax.text(x, y + 0.17, _GRAPH_OPS.get(name, name), ha="center", va="center", fontsize=10, fontweight="bold")
        ax.text(x, y - 0.02, f"{nodes[name]['value']:.4g}", ha="center", va="center", fontsize=11,
                color=FORWARD_GREEN, fontweight="bold")
        ax.text(x, y - 0.19, f"∂f/∂{name} = {nodes[name]['grad']:.4g}", ha="center", va="center", fontsize=9,
                color=BACKWARD_RED)
    lg = example["loss_grads"]
    ax.text(3.05, 0.75, f"Loss = ½(f − ({example['target']:g}))²\n= {example['loss']:.4g}\n\n"
            + "\n".join(f"∂Loss/∂{k} = {lg[k]:.4g}" for k in "xyz"), va="center", fontsize=9)
    ax.text(-0.35, -0.55, "green: value (forward pass, left to right)    red: gradient ∂f/∂node "
            "(backward pass, right to left)", fontsize=8.5, color="#333333")
    ax.set_xlim(-0.45, 4.0)
    ax.set_ylim(-0.7, 2.45)
    ax.axis("off")
    ax.set_title("the seed's computational graph f = (x + y) · z at the experiment's start point")


def seed_graph_curves(curves: pd.DataFrame, verdict: pd.DataFrame, target: float) -> plt.Figure:
    """Which learning rates η make the seed's graph converge, oscillate or diverge?

    Full training loss per η (log y), coloured by verdict: converged (reached the target),
    slow (still falling at the end), oscillates (neither), diverged (stopped early).
    """
    c = curves[(curves["key"] == R.FULL_TRAIN_LOSS) & (curves["value"] > 0)]
    if c.empty:
        raise NotApplicable("no full_train_loss curves were logged")
    v = verdict.sort_values("learning_rate")
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), constrained_layout=True,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    ax = axes[0]
    shades = {k: iter(sns.light_palette(col, len(v) + 3)[3:][::-1]) for k, col in VERDICT_COLORS.items()}
    for r in v.itertuples():
        g = c[c["run_id"] == r.run_id]
        ax.plot(g["step"], g["value"], color=next(shades[r.verdict]), lw=1.3,
                label=f"η={r.learning_rate:g}: {r.verdict}")
        if r.verdict == "diverged":
            ax.plot(g["step"].iloc[-1:], g["value"].iloc[-1:], "x", color=VERDICT_COLORS["diverged"], ms=8)
    ax.axhline(target, color="black", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step (updates)")
    ax.set_ylabel("loss ½(f − Target)²")
    ax.set_title(f"loss by learning rate (dotted: target {target:g}; ✕: diverged)")
    ax.legend(fontsize=7, ncol=1 if len(v) <= 14 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[1]
    y = np.where(v["reached"], v["steps"], np.nan)
    colors = [VERDICT_COLORS[k] for k in v["verdict"]]
    top = np.nanmax(y) * 1.3 if np.isfinite(y).any() else 1.0
    for i, (t, col) in enumerate(zip(y, colors)):
        ax.bar(i, t if np.isfinite(t) else top, color=col, alpha=1.0 if np.isfinite(t) else 0.25)
    for i, (t, k) in enumerate(zip(y, v["verdict"])):
        if not np.isfinite(t):
            ax.text(i, top * 0.5, k, rotation=90, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(v)), [f"{x:g}" for x in v["learning_rate"]], rotation=60, fontsize=8)
    ax.set_xlabel("learning rate η")
    ax.set_ylabel(f"steps to loss {target:g}")
    ax.set_title("steps to target (pale bars: never reached)")
    fig.suptitle("the seed's graph: which η converge?")
    return fig
