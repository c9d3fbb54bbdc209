"""The seed's own pictures and rules (docs/seed.md §3–5), from the logged runs.

- The ball on the curve: gradient descent's iterates, read from the ``param/<name>``
  histories that tiny models log (``bpresearch.core.train.TRACK_PARAMS_MAX``), drawn on the
  loss J(w) (one weight: a curve; two weights: contours), one panel per learning rate
  chosen from the sweep's own results: the slowest that reached the target, the fastest,
  and one that diverged or oscillated (``pick_runs``).
- The worked update (η = 0.1, Target = −10) beside the seed's graph, with the losses that
  follow and the sweep's best η.
- "Too small takes very long", and "when the gradient is small enough, we call it the
  minimum" (``train.grad_tol``), in numbers.

J(w) itself is evaluated on a grid from the run's resolved config (model, loss, data:
``surface``); the iterates are never recomputed.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch import verdicts as V

from . import figures as F
from .figures import plt
from .prose import fmt_steps, lr_list

SLOW, FAST, WILD = "too small", "well chosen", "too large"


# ---------------------------------------------------------------- the logged trajectories
def param_names(runs: pd.DataFrame) -> list[str]:
    """The parameters whose trajectories were logged (``param/<name>``), in logged order."""
    prefix = f"metrics.{R.PARAM_PREFIX}"
    return [c[len(prefix):] for c in runs.columns if c.startswith(prefix)]


def param_keys(runs: pd.DataFrame) -> tuple[str, ...]:
    """The ``param/<name>`` metric keys of ``runs`` (for ``load.load_curves``)."""
    return tuple(R.param_metric(n) for n in param_names(runs))


def paths(curves: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """One row per run and logged step, one column per parameter: ``run_id, step, <names>``."""
    keys = {R.param_metric(n): n for n in names}
    c = curves[curves["key"].isin(list(keys))]
    out = c.pivot_table(index=["run_id", "step"], columns="key", values="value", aggfunc="last")
    out = out.rename(columns=keys).reset_index()
    return out.reindex(columns=["run_id", "step", *names]).dropna().sort_values(["run_id", "step"])


class Pick(NamedTuple):
    role: str            # SLOW, FAST or WILD
    run_id: str
    learning_rate: float
    outcome: str         # "slowest to reach loss 1e-4: 90 steps", "diverged at step 10", …


def pick_runs(v: pd.DataFrame, target: float) -> list[Pick]:
    """The learning rates the ball-on-the-curve figure shows, chosen from the sweep's results.

    Among gradient-descent runs of the first seed: the slowest that reached the target
    (most steps), the fastest (fewest steps; ties: the smaller η), and the smallest η
    that diverged, else the smallest that oscillated. A role that no run fills is left out.

    Args:
        v: ``measures.verdicts`` for the target, with ``diverged_step``.
        target: the loss target.
    """
    v = v[v["optimizer"] != "random_search"] if "optimizer" in v else v
    if v.empty:
        return []
    v = v[v["seed"] == v["seed"].min()] if "seed" in v else v
    out = []
    reached = v[v["reached"]].sort_values(["steps", "learning_rate"])
    if not reached.empty:
        slow = reached.sort_values(["steps", "learning_rate"], ascending=[False, True]).iloc[0]
        fast = reached.iloc[0]
        if slow["run_id"] != fast["run_id"]:
            out.append(Pick(SLOW, slow["run_id"], float(slow["learning_rate"]),
                            f"slowest to reach loss {target:g}: {fmt_steps(slow['steps'])} steps"))
        out.append(Pick(FAST, fast["run_id"], float(fast["learning_rate"]),
                        f"fastest to reach loss {target:g}: {fmt_steps(fast['steps'])} steps"))
    for verdict in ("diverged", "oscillates"):
        g = v[v["verdict"] == verdict].sort_values("learning_rate")
        if not g.empty:
            r = g.iloc[0]
            what = f"diverged at step {int(r['diverged_step'])}" if verdict == "diverged" else \
                "oscillates: neither reached nor diverged"
            out.append(Pick(WILD, r["run_id"], float(r["learning_rate"]), what))
            break
    return out


# ---------------------------------------------------------------- J(w) from the resolved config
def surface(config: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``J(W)``: the full training loss at each row of ``W`` (m, n_params), from a resolved config.

    The parameters are ordered as ``bpresearch.core.train.param_names`` (the ``param/<name>``
    histories). Raises ``NotApplicable`` when the data cannot be rebuilt without the
    experiment file (a user's data file).
    """
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from bpresearch.core import data as D
    from bpresearch.spec import config as C
    from bpresearch.spec import workload as W

    config = C.complete(config)   # the logged config holds only the keys that apply
    if config["data"]["source"] == "file":
        raise F.NotApplicable("J(w) needs the training data, and a user's data file is not kept in the store")
    ds = W.to_device(config, D.load(config["data"], "."))
    model = W.build_model(config, ds)
    loss = W.loss_fn(config)
    _, unravel = ravel_pytree(model.init(jax.random.key(0)))
    J = jax.jit(jax.vmap(lambda theta: loss(model.apply(unravel(theta), ds.X_train), ds.y_train)))
    return lambda Wm: np.asarray(J(jnp.asarray(np.atleast_2d(Wm), jnp.float32)), float)


# ---------------------------------------------------------------- figures
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
        J: ``surface`` of the experiment's config.
        name: the one parameter.

    Returns:
        Panels left to right as in ``picks``: J(w) (black), the iterates w_k as dots on it
        (colour: step, dark to light), joined in order by thin lines; the start circled.
        The line with gid = run id holds exactly the logged iterates inside the window.
    """
    if not picks:
        raise F.NotApplicable("no gradient-descent run reached the target, diverged or oscillated")
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
        ax.set_title(_panel_title(p, n_in, len(g), int(steps[-1])), fontsize=10, color=F.VERDICT_COLORS["diverged"] if p.role == WILD else "black")
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
        raise F.NotApplicable("no gradient-descent run reached the target, diverged or oscillated")
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
        ax.set_title(_panel_title(p, n_in, len(g), int(steps[-1])), fontsize=10, color=F.VERDICT_COLORS["diverged"] if p.role == WILD else "black")
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
    F.draw_seed_graph(ax, example)
    lr, t = example["lr"], example["target"]
    n, g, u = example["nodes"], example["loss_grads"], example["updated"]
    f = n["f"]["value"]
    lines = [
        (f"One update with η = {lr:g} and Target = {t:g} (docs/seed.md §5)", "black", "bold"),
        (f"Loss = ½(f − Target)² = ½({f:.4g} − ({t:g}))² = {example['loss']:.4g}", "black", "normal"),
        ("loss gradients: " + ",  ".join(
            f"∂Loss/∂{k} = (f − Target)·∂f/∂{k} = ({f - t:.4g})({n[k]['grad']:.4g}) = {g[k]:.4g}" for k in "xyz"),
         F.BACKWARD_RED, "normal"),
        ("new values v ← v − η·∂Loss/∂v:  " + ",  ".join(
            f"{k} = {n[k]['value']:.4g} − {lr:g}·({g[k]:.4g}) = {u[k]:.4g}" for k in "xyz"), F.FORWARD_GREEN, "normal"),
        (f"repeated: loss {post['losses']}  →  {post['verdict']}", F.VERDICT_COLORS["diverged"], "bold"),
        (post["best"], F.VERDICT_COLORS["converged"], "bold"),
    ]
    for i, (text, color, weight) in enumerate(lines):
        bx.text(0.0, 1.0 - i * 0.17, text, transform=bx.transAxes, fontsize=8.6 if i in (2, 3) else 9.5,
                color=color, fontweight=weight, va="top")
    bx.axis("off")
    return fig


# ---------------------------------------------------------------- sentences
def worked_update(example: dict, verdict: str | None, best: pd.Series | None, target: float,
                  shown: int = 4) -> dict:
    """The post's update in words: its losses that follow, whether it converges, the sweep's best η.

    Args:
        example: ``seed_example`` at the post's η with at least ``shown`` steps of history.
        verdict: the sweep's verdict for that η (``measures.verdicts``), or None when not run.
        best: the best learning rate row, or None.
        target: the loss target.
    Returns:
        ``losses`` ("2 → 13.7 → 55.3 → …"), ``verdict`` and ``best`` (phrases), ``sentence``.
    """
    h = [x["loss"] for x in example["history"]]
    losses = " → ".join(f"{x:.3g}" for x in h[:shown]) + (" → …" if len(h) > shown else "")
    lr = example["lr"]
    if verdict is None:  # not in the sweep: judge the hand-computed history
        verdict = "converged" if h[-1] < target else "oscillates"
    words = {"converged": f"η = {lr:g} converges", "slow": f"η = {lr:g} does not converge within the budget",
             "oscillates": f"η = {lr:g} does not converge: the loss keeps jumping",
             "diverged": f"η = {lr:g} does not converge: it diverges"}[verdict]
    if best is None or not bool(best["reached"]):
        best_words = f"no learning rate of the sweep reached loss {target:g}"
    else:
        best_words = (f"the sweep's best is η = {best['learning_rate']:.3g}: loss below {target:g} in "
                      f"{fmt_steps(best['steps'])} steps")
    g, u = example["loss_grads"], example["updated"]
    sentence = (f"The post's worked update (η = {lr:g}, Target = {example['target']:g}): loss {example['loss']:.4g}, "
                f"loss gradients {', '.join(f'{g[k]:.4g}' for k in 'xyz')} (x, y, z), new values "
                f"{', '.join(f'{u[k]:.4g}' for k in 'xyz')}; repeated, the loss goes {losses}: {words}; "
                f"{best_words}.")
    return {"losses": losses, "verdict": words, "best": best_words[0].upper() + best_words[1:], "sentence": sentence}


def findings_small_vs_best(cell: pd.DataFrame, runs: pd.DataFrame, target: float, budget: int,
                           full: int | None = None) -> list[str]:
    """"Too small takes very long" (docs/seed.md §3): the smallest learning rate against the best, in steps.

    One sentence per gradient optimizer × batch size with at least two learning rates.
    """
    out = []
    c = cell[(cell["target"] == target) & (cell["optimizer"] != "random_search")]
    n_groups = len(c[["optimizer", "batch_size"]].drop_duplicates())
    for (opt, bs), g in c.groupby(["optimizer", "batch_size"], sort=True):
        if g["learning_rate"].nunique() < 2:
            continue
        where = f"At batch size {F._bs_label(int(bs), full)} ({opt}): " if n_groups > 1 else ""
        seeds = f" (median over {int(g['n'].max())} seeds)" if g["n"].max() > 1 else ""
        g = g.sort_values("learning_rate")
        small, b = g.iloc[0], V.best(g["median_steps"].to_numpy(float))
        if b is None:
            text = f"no learning rate reached loss {target:g} within the {budget:,}-step budget{seeds}."
        elif b == 0:
            text = (f"the smallest learning rate, η = {small['learning_rate']:.3g}, was also the fastest to loss "
                    f"{target:g} ({fmt_steps(small['median_steps'])} steps{seeds}): the grid does not reach down "
                    f"to a step that is too small.")
        else:
            best = g.iloc[b]
            tail = f"the best, η = {best['learning_rate']:.3g}, took {fmt_steps(best['median_steps'])}"
            text = f"too small takes very long: the smallest learning rate, η = {small['learning_rate']:.3g}, "
            if np.isfinite(small["median_steps"]):
                ratio = small["median_steps"] / max(best["median_steps"], 1)
                text += (f"took {fmt_steps(small['median_steps'])} steps to loss {target:g}, {ratio:.3g}× as many as "
                         f"the best, η = {best['learning_rate']:.3g} ({fmt_steps(best['median_steps'])} steps){seeds}.")
            else:
                r = runs[(runs["optimizer"] == opt) & (runs["batch_size"] == bs)
                         & np.isclose(runs["learning_rate"], small["learning_rate"])]
                key = f"metrics.{R.FINAL_LOSS}"
                end = r[key].median() if key in r else np.nan
                still = f" (its loss was still {end:.3g} at the end)" if np.isfinite(end) else ""
                text += (f"had not arrived at loss {target:g} within the {budget:,}-step budget{still}; {tail} "
                         f"steps{seeds}.")
        out.append(where + (text if where else text[0].upper() + text[1:]))
    return out


def findings_ball(picks: list[Pick], names: list[str]) -> list[str]:
    """Which learning rates the ball-on-the-curve figure shows, and why those."""
    if not picks:
        return []
    what = "; ".join(f"{p.role}, η = {p.learning_rate:.3g} ({p.outcome})" for p in picks)
    shape = "J(w)" if len(names) == 1 else f"the contours of J({', '.join(names)})"
    return [f"Gradient descent on {shape}, from the logged {', '.join(R.param_metric(n) for n in names)} "
            f"histories: {what}; chosen from this sweep's results."]


def grad_tol_table(runs: pd.DataFrame, table: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per gradient-descent run: steps to the loss target and to |∇J| < grad_tol (NaN: not reached)."""
    r = runs[runs["optimizer"] != "random_search"] if "optimizer" in runs else runs
    t = table[table["target"] == target].set_index("run_id")["steps"]
    out = pd.DataFrame({
        "run_id": r["run_id"], "learning_rate": r["learning_rate"], "batch_size": r["batch_size"], "seed": r["seed"],
        "diverged": r["diverged"],
        "steps_to_target": r["run_id"].map(t).astype(float),
        "steps_to_grad_tol": r.get(f"metrics.{R.STEPS_TO_GRAD_TOL}", pd.Series(np.nan, index=r.index)).astype(float),
    })
    return out.sort_values(["batch_size", "learning_rate", "seed"]).reset_index(drop=True)


def findings_grad_tol(gt: pd.DataFrame, tol: float, target: float, budget: int) -> list[str]:
    """"When the gradient is small enough, we call it the minimum": the gradient rule against the loss target."""
    both = gt[gt["steps_to_target"].notna() & gt["steps_to_grad_tol"].notna()]
    grid = sorted(gt["learning_rate"].unique())
    out = []
    n_tol = int(gt["steps_to_grad_tol"].notna().sum())
    head = (f"Gradient small enough (train.grad_tol = {tol:g}, docs/seed.md §3): the full-batch gradient norm fell below "
            f"{tol:g} in {n_tol} of {len(gt)} gradient-descent runs within the {budget:,}-step budget")
    if both.empty:
        return [head + f"; none of them also reached loss {target:g}."]
    d = both["steps_to_grad_tol"] - both["steps_to_target"]
    later, earlier, same = int((d > 0).sum()), int((d < 0).sum()), int((d == 0).sum())
    out.append(head + f". Of the {len(both)} runs that met both rules, |∇J| < {tol:g} came after loss < {target:g} "
               f"in {later}, before it in {earlier} and at the same step in {same} (median difference "
               f"{np.median(d):+.0f} steps).")
    if earlier:
        e = both[d < 0]
        out.append(f"A small gradient is not yet the minimum: at η = {lr_list(e['learning_rate'], grid)} the gradient "
                   f"norm was below {tol:g} before the loss was below {target:g} (by up to "
                   f"{int(-d.min())} steps): where J is flat, a small gradient still leaves the loss above the target.")
    only = gt[gt["steps_to_grad_tol"].notna() != gt["steps_to_target"].notna()]
    if not only.empty:
        out.append(f"Met one rule but not the other within the budget: η = {lr_list(only['learning_rate'], grid)}.")
    return out
