"""The seed's rules in words (docs/seed.md §3–5): the post's worked update, "too small takes
very long", which learning rates the ball on the curve shows, and "when the gradient is small
enough, we call it the minimum".

Pure: numbers in, strings out, as ``prose``; which of them a report holds is decided in
``analysis.sections.seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch import verdicts as V

from .prose import bs_text, fmt_steps, lr_list
from .trajectories import Pick


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
        several = c["optimizer"].nunique() > 1
        where = f"At {bs_text(int(bs), full)}" + (f" ({opt})" if several else "") + ": " if n_groups > 1 else ""
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
