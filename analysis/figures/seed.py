"""The seed's own pictures (docs/seed.md §3–5): its computational graph with values and
gradients beside the post's one-step update, which learning rates converge, and the ball
on the curve: gradient descent's iterates on J(w).

The iterates are the logged ``param/<name>`` histories (``analysis.trajectories``), never
recomputed; J(w) itself is a callable the report is handed (the run side evaluates it from
the run's resolved config: ``bpresearch.spec.landscape``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyBboxPatch

from bpresearch import keys as R

from ..trajectories import FAST, WILD, Pick
from .style import BACKWARD_RED, FORWARD_GREEN, VERDICT_COLORS, NotApplicable, plt

_GRAPH_POS = {"x": (0.0, 2.0), "y": (0.0, 1.0), "z": (0.0, 0.0), "q": (1.3, 1.5), "f": (2.6, 0.75)}
_GRAPH_EDGES = [("x", "q"), ("y", "q"), ("q", "f"), ("z", "f")]
_GRAPH_OPS = {"q": "q = x + y", "f": "f = q · z"}


def draw_seed_graph(ax: plt.Axes, example: dict):
    """The seed's graph f = (x+y)·z into ``ax``: every node's value (green, forward pass) and
    ∂f/∂node (red, backward pass), and a note with the loss and ∂Loss/∂x,y,z at that point.

    Args:
        ax: where to draw (``seed_graph_update`` puts the update below it).
        example: the seed's worked example (``nodes``, ``loss``, ``loss_grads``, ``target``).
    """
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


# ---------------------------------------------------------------- the ball on the curve
WILD_SHOWN = 6  # the too-large panel is sized to show this many iterates: a few jumps, not the escape


def _windows(track: pd.DataFrame, picks: list[Pick], names: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """Centre (the fastest run's last iterate) and each panel's half-width, padded by 25%.

    The calm panels share one window holding all their paths; the too-large panel gets one
    holding its first ``WILD_SHOWN`` iterates, so that its jumps past the minimum show.
    """
    by = {p.role: track[track["run_id"] == p.run_id][names].to_numpy() for p in picks}
    centre = by.get(FAST, next(iter(by.values())))[-1]
    calm = [by[p.role] for p in picks if p.role != WILD] or [by[picks[0].role][:1]]
    half = 1.25 * max(max(float(np.abs(a - centre).max()) for a in calm), 1e-3)
    out = {p.role: half for p in picks}
    if WILD in by:
        out[WILD] = max(half, 1.1 * float(np.abs(by[WILD][:WILD_SHOWN] - centre).max()))
    return centre, out


def _inside(points: np.ndarray, centre: np.ndarray, half: float) -> int:
    """How many leading points lie inside the window."""
    out = np.abs(points - centre).max(axis=1) > half
    return int(np.argmax(out)) if out.any() else len(points)


def _panel_title(p: Pick, n_in: int, n: int, last_step: int) -> str:
    title = f"{p.role}: η = {p.learning_rate:.3g}\n{p.outcome}"
    return title + (f" (shown: steps 0–{last_step})" if n_in < n else "")


def ball_on_curve(track: pd.DataFrame, picks: list[Pick], J: Callable, name: str = "w") -> plt.Figure:
    """docs/seed.md §3: the ball rolling down J(w), one panel per chosen learning rate.

    Args:
        track: ``paths`` of the runs (columns ``run_id, step, <name>``), from the logged histories.
        picks: ``pick_runs``.
        J: the full training loss at each row of W (m, n_params), from the run's resolved config.
        name: the one parameter.

    Returns:
        Panels left to right as in ``picks``: J(w) (black), the iterates w_k as dots on it
        (colour: step, dark to light), joined in order by thin lines; the start circled.
        The line with gid = run id holds exactly the logged iterates inside the window.
    """
    if not picks:
        raise NotApplicable("no gradient-descent run reached the target, diverged or oscillated")
    centre, halves = _windows(track, picks, [name])
    fig, axes = plt.subplots(1, len(picks), figsize=(4.4 * len(picks), 4.2), constrained_layout=True,
                             squeeze=False)
    for ax, p in zip(axes[0], picks):
        half = halves[p.role]
        grid = np.linspace(centre[0] - half, centre[0] + half, 400)
        Jg = J(grid[:, None])
        g = track[track["run_id"] == p.run_id]
        w = g[[name]].to_numpy()
        n_in = _inside(w, centre, half)
        w, steps = w[:n_in, 0], g["step"].to_numpy()[:n_in]
        jw = J(w[:, None])
        ax.plot(grid, Jg, color="black", lw=1.6, zorder=1)
        ax.plot(w, jw, "-", color="#999999", lw=0.6, zorder=2, gid=p.run_id)
        ax.scatter(w, jw, c=steps, cmap="plasma", s=22, zorder=3, edgecolors="none",
                   vmin=0, vmax=max(int(steps.max()), 1))
        ax.scatter(w[:1], jw[:1], s=140, facecolors="none", edgecolors="black", lw=1.3, zorder=4)
        ax.annotate("start", (w[0], jw[0]), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_title(_panel_title(p, n_in, len(g), int(steps[-1])), fontsize=10,
                     color=VERDICT_COLORS["diverged"] if p.role == WILD else "black")
        ax.set_xlabel(name)
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(-0.03 * Jg.max(), 1.08 * Jg.max())
    axes[0][0].set_ylabel(f"J({name}): full training loss")
    fig.suptitle("the ball on the curve: gradient descent's iterates on J(w) "
                 "(dots: logged w after each update, dark → light = early → late)", fontsize=11)
    return fig


def contour_paths(track: pd.DataFrame, picks: list[Pick], J: Callable, names: list[str]) -> plt.Figure:
    """Two weights: the paths of the chosen learning rates over the contours of J(w1, w2).

    Same panels and window rule as ``ball_on_curve``; equal axes, so the bowl's shape is true.
    """
    if not picks:
        raise NotApplicable("no gradient-descent run reached the target, diverged or oscillated")
    centre, halves = _windows(track, picks, names)
    fig, axes = plt.subplots(1, len(picks), figsize=(4.4 * len(picks), 4.6), constrained_layout=True,
                             squeeze=False)
    for ax, p in zip(axes[0], picks):
        half = halves[p.role]
        a = np.linspace(centre[0] - half, centre[0] + half, 160)
        b = np.linspace(centre[1] - half, centre[1] + half, 160)
        A, B = np.meshgrid(a, b)
        Z = J(np.column_stack([A.ravel(), B.ravel()])).reshape(A.shape)
        top = float(Z.max())
        levels = np.geomspace(top * 1e-3, top, 12)
        g = track[track["run_id"] == p.run_id]
        w = g[names].to_numpy()
        n_in = _inside(w, centre, half)
        w, steps = w[:n_in], g["step"].to_numpy()[:n_in]
        ax.contourf(A, B, Z, levels=levels, cmap="Greys", alpha=0.35)
        ax.contour(A, B, Z, levels=levels, colors="#555555", linewidths=0.6)
        ax.plot(w[:, 0], w[:, 1], "-", color="#333333", lw=0.7, zorder=2, gid=p.run_id)
        ax.scatter(w[:, 0], w[:, 1], c=steps, cmap="plasma", s=18, zorder=3, edgecolors="none",
                   vmin=0, vmax=max(int(steps.max()), 1))
        ax.scatter(w[:1, 0], w[:1, 1], s=140, facecolors="none", edgecolors="black", lw=1.3, zorder=4)
        ax.annotate("start", (w[0, 0], w[0, 1]), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_title(_panel_title(p, n_in, len(g), int(steps[-1])), fontsize=10,
                     color=VERDICT_COLORS["diverged"] if p.role == WILD else "black")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_xlim(a[0], a[-1])
        ax.set_ylim(b[0], b[-1])
        ax.set_aspect("equal")
    fig.suptitle("gradient descent's path over the contours of J(w) (dots: logged w after each update, "
                 "dark → light = early → late)", fontsize=11)
    return fig


def seed_graph_update(example: dict, post: dict, best: pd.Series | None, target: float) -> plt.Figure:
    """The seed's graph (values green, gradients red) and, below it, the post's one-step update.

    Args:
        example: ``bpresearch.core.seed.seed_example`` at the post's η with a few steps of history.
        post: ``worked_update(example, …)``: the words for the η = 0.1 verdict.
        best: the sweep's best learning rate (a row of ``measures.best_learning_rate``), or None.
        target: the loss target of that best.
    """
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(9.5, 7.4), constrained_layout=True,
                                 gridspec_kw={"height_ratios": [1.55, 1]})
    draw_seed_graph(ax, example)
    lr, t = example["lr"], example["target"]
    n, g, u = example["nodes"], example["loss_grads"], example["updated"]
    f = n["f"]["value"]
    lines = [
        (f"One update with η = {lr:g} and Target = {t:g} (docs/seed.md §5)", "black", "bold"),
        (f"Loss = ½(f − Target)² = ½({f:.4g} − ({t:g}))² = {example['loss']:.4g}", "black", "normal"),
        ("loss gradients: " + ",  ".join(
            f"∂Loss/∂{k} = (f − Target)·∂f/∂{k} = ({f - t:.4g})({n[k]['grad']:.4g}) = {g[k]:.4g}" for k in "xyz"),
         BACKWARD_RED, "normal"),
        ("new values v ← v − η·∂Loss/∂v:  " + ",  ".join(
            f"{k} = {n[k]['value']:.4g} − {lr:g}·({g[k]:.4g}) = {u[k]:.4g}" for k in "xyz"), FORWARD_GREEN, "normal"),
        (f"repeated: loss {post['losses']}  →  {post['verdict']}", VERDICT_COLORS["diverged"], "bold"),
        (post["best"], VERDICT_COLORS["converged"], "bold"),
    ]
    for i, (text, color, weight) in enumerate(lines):
        bx.text(0.0, 1.0 - i * 0.17, text, transform=bx.transAxes, fontsize=8.6 if i in (2, 3) else 9.5,
                color=color, fontweight=weight, va="top")
    bx.axis("off")
    return fig

