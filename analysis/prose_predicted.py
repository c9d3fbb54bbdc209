"""The findings in words about what the diagnostics predicted against what was measured:
the 2/λ stability bound and where the boundary fell, the sharpness regimes (edge of
stability only by a stated criterion), the two gradient noises, and the critical batch
size along the training path.

Pure: numbers in, strings out, as ``prose``; which of them a report holds is decided in ``analysis.sections``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .boundary import bound_labels
from .prose import bs_text, lr_list, span


def _init_text(init: pd.Series) -> str:
    """``2/λ_max at initialisation = 1.53 (λ_max = 1.31; one seed)``."""
    lam, _ = bound_labels(init["factor"])
    seeds = "one seed" if init["n_seeds"] == 1 else \
        f"median over {init['n_seeds']} seeds, {span(init['stability_lr_min'], init['stability_lr_max'])}"
    return f"{lam} at initialisation = {init['stability_lr']:.3g} (λ_max = {init['sharpness']:.3g}; {seeds})"


def _diverged(r) -> str:
    """How the runs at the bracket's upper end failed: "diverged", or grew unstable without diverging."""
    return "unstable" if getattr(r, "lowest_unstable", False) else "diverged"


UNSTABLE_WORDS = "the full loss ended above its start or rose steadily, without passing the divergence limit"


def bracket_text(r) -> str:
    """The measured divergence boundary of one batch size, as a bracket in words."""
    if not np.isfinite(r.lowest_diverged):
        return f"no run diverged up to η = {r.grid_max:.3g} (boundary > {r.grid_max:.3g})"
    if not np.isfinite(r.highest_stable):
        return (f"{_diverged(r)} already at the smallest η = {r.lowest_diverged:.3g} "
                f"(boundary ≤ {r.lowest_diverged:.3g})")
    s = (f"in ({r.highest_stable:.3g}, {r.lowest_diverged:.3g}]: highest stable η = {r.highest_stable:.3g}, "
         f"lowest {_diverged(r)} η = {r.lowest_diverged:.3g}; geometric midpoint {r.midpoint:.3g}")
    if not r.monotone:
        s += f" (not monotone: η = {r.largest_stable:.3g} stayed stable)"
    return s


def position_text(r) -> str:
    """Where the prediction falls against one measured bracket."""
    if r.position == "inside":
        return "inside the bracket" if np.isfinite(r.hi) else "consistent (no divergence up to the grid's end)"
    side = "below" if r.position == "below" else "above"
    return f"{r.factor_off:.2g}× {side} the bracket"


def findings_boundary(cmp: pd.DataFrame, init: pd.Series, full: int | None) -> list[str]:
    """The predicted divergence boundary against the measured one: full batch, then the others."""
    lam, _ = bound_labels(init["factor"])
    pred = init["stability_lr"]
    ref = cmp[cmp["batch_size"] == full] if full is not None else cmp.iloc[0:0]
    where = bs_text(full, full) if not ref.empty else None
    if ref.empty:
        ref = cmp.sort_values("batch_size").iloc[-1:]
        where = (f"batch size {int(ref['batch_size'].iloc[0])} (the largest; no full-batch runs, for which the "
                 f"bound is derived)")
    r = next(ref.itertuples())
    head = _init_text(init)
    if not np.isfinite(r.lowest_diverged):
        if pred > r.grid_max:
            s = (f"{head} lies beyond the grid: at {where} no run diverged up to η = {r.grid_max:.3g}, consistent "
                 f"with it, but the boundary itself was not reached.")
        else:
            s = (f"{head} predicts divergence above it, yet at {where} no run diverged up to η = {r.grid_max:.3g}, "
                 f"{r.grid_max / pred:.2g}× the prediction.")
    else:
        verb = {"inside": "predicts", "below": "underestimates", "above": "overestimates"}[r.position]
        how = "diverged" if _diverged(r) == "diverged" else f"grew unstable ({UNSTABLE_WORDS})"
        stable = (f"did not diverge at η ≤ {r.highest_stable:.3g}" if np.isfinite(r.highest_stable)
                  else f"{_diverged(r)} already at the smallest η of the grid")
        s = (f"{head} {verb} the divergence boundary at {where}: runs {how} at η ≥ {r.lowest_diverged:.3g} "
             f"and {stable}")
        if np.isfinite(r.midpoint):
            s += (f", so the boundary lies in ({r.highest_stable:.3g}, {r.lowest_diverged:.3g}] (geometric midpoint "
                  f"{r.midpoint:.3g}; prediction ÷ midpoint = {r.ratio:.2g})")
        s += {"inside": " — the prediction is inside the bracket.",
              "below": f" — the prediction lies {r.factor_off:.2g}× below the bracket: training stayed stable "
                       f"{'well ' if r.factor_off >= 1.5 else ''}beyond {lam} at initialisation (see the sharpness "
                       f"over training below).",
              "above": f" — the prediction lies {r.factor_off:.2g}× above the bracket: runs diverged before reaching "
                       f"the bound."}[r.position]
        if not r.monotone:
            s += f" Divergence was not monotone in η: η = {r.largest_stable:.3g} stayed stable."
    out = [s]
    others = cmp[cmp["batch_size"] != r.batch_size]
    if not others.empty:
        parts = [f"{b.batch_size}: " + (f"({b.highest_stable:.3g}, {b.lowest_diverged:.3g}]"
                                        if np.isfinite(b.midpoint) else bracket_text(b)) + f", {position_text(b)}"
                 for b in others.itertuples()]
        out.append(f"At the other batch sizes the measured boundary (highest stable, lowest diverged η] was — "
                   f"{'; '.join(parts)}. The bound {lam} is derived for full-batch gradient descent; with minibatches "
                   f"the sampling noise and the per-batch curvature move the boundary.")
    return out


def ratio_words(r: float) -> str:
    if not np.isfinite(r):
        return "—"
    f = max(r, 1 / r)
    return "agree within 2×" if f <= 2 else f"differ by {f:.2g}×"


def findings_two_noises(mini: pd.DataFrame, traj: pd.DataFrame, full: int, eval_every: int) -> list[str]:
    """Batch size 1 against full batch, for both noises, named for what they are.

    ``mini``: ``noise_by_batch_size`` of the minibatch loss (the loss on the examples the
    optimizer sees: mostly the spread of single examples' losses at batch size 1);
    ``traj``: the same of the full training loss every E steps (how much the parameters jitter).
    """
    out = []
    for what, nb, note in (("minibatch-loss noise (the loss on the batch the optimizer sees, step to step)", mini,
                            "this is mostly the spread of single examples' losses, not of the parameters"),
                           ("trajectory noise (the full training loss, evaluation to evaluation, every "
                            + ("step)" if eval_every == 1 else f"{eval_every} steps)"), traj,
                            "how much the parameters themselves jitter")):
        rows = []
        for lr, g in nb.groupby("learning_rate"):
            one, whole = g[g["batch_size"] == 1]["noise"], g[g["batch_size"] == full]["noise"]
            if one.empty or whole.empty or not (np.isfinite(one.iloc[0]) and np.isfinite(whole.iloc[0])):
                continue
            rows.append((lr, one.iloc[0], whole.iloc[0]))
        if not rows:
            continue
        txt = "; ".join(f"η = {lr:.3g}: {o:.3g} vs {w:.3g}" + (f" ({o / w:,.1f}×)" if w > 0 else "")
                        for lr, o, w in rows)
        out.append(f"Batch size 1 against full batch, {what}: {txt} (std of the change of log loss, median over "
                   f"seeds; {note}).")
    return out or ["No learning rate has stable runs at both batch size 1 and the full batch to compare their noise."]


def findings_sharpness(reg: pd.DataFrame, factor: float, every: int | None, band: float, stretch: int) -> list[str]:
    """What the full-batch sharpness did against 2/η; the edge of stability only where it was measured there."""
    if reg.empty:
        return []
    _, eta = bound_labels(factor)
    grid = sorted(reg["learning_rate"].unique())
    ok = reg[~reg["diverged"]]
    crit = (f"a rise from below into ±{band:.0%} of {eta}, staying there to the last measurement for at least "
            f"{stretch} consecutive measurements (steps 0, 1, 2, 4, … then every {every})") if every else \
        f"a rise from below into ±{band:.0%} of {eta}, staying there for {stretch} measurements"
    out = []
    edge = ok[ok["regime"] == "edge of stability"]
    if not edge.empty:
        out.append(f"Edge of stability (Cohen et al. 2021), by the criterion {crit}: at η = "
                   f"{lr_list(edge['learning_rate'], grid)} ({len(edge)} run{'s' if len(edge) > 1 else ''}; stretches "
                   f"at steps {', '.join(sorted(set(edge['edge_steps'])))}).")
    else:
        out.append(f"No full-batch run was at the edge of stability by the criterion {crit}.")
    out += _findings_failed(ok, grid, eta)
    cat = ok[ok["regime"] == "catapult"]
    if not cat.empty:
        out.append(f"Catapult-like drop at η = {lr_list(cat['learning_rate'], grid)}: sharpness started above {eta} "
                   f"({span(cat['ratio_0'].min(), cat['ratio_0'].max(), '.2g')}× it) and fell far below it by step "
                   f"{span(cat['drop_step'].min(), cat['drop_step'].max(), '.0f')} (under half), ending at "
                   f"{span(cat['ratio_end'].min(), cat['ratio_end'].max(), '.2g')}× {eta}.")
    below = ok[ok["regime"].isin(["below", "rose"])]
    if not below.empty:
        rose = below[below["regime"] == "rose"]
        out.append(f"At η = {lr_list(below['learning_rate'], grid)} the sharpness stayed below {eta}: at most "
                   f"{below['ratio_max'].max():.2g}× it" + (f"; it rose by more than 10% (progressive sharpening) at "
                                                            f"η = {lr_list(rose['learning_rate'], grid)}"
                                                            if not rose.empty else "") + ".")
    const = ok[ok["regime"] == "constant"]
    if not const.empty:
        out.append(f"At η = {lr_list(const['learning_rate'], grid)} the sharpness was constant (within "
                   f"±{band:.0%}) at {span(const['ratio_min'].min(), const['ratio_max'].max(), '.2g')}× {eta}: a fixed "
                   f"curvature, neither progressive sharpening nor the edge of stability.")
    fell = ok[ok["regime"] == "fell to the bound"]
    if not fell.empty:
        out.append(f"At η = {lr_list(fell['learning_rate'], grid)} the sharpness started above {eta} and fell into "
                   f"±{band:.0%} of it, where it stayed to the end (last "
                   f"{span(fell['ratio_end'].min(), fell['ratio_end'].max(), '.2g')}× {eta}): training settled where "
                   f"the sharpness is at the bound; not the edge of stability, which rises to it from below.")
    un = ok[ok["regime"] == "above, unresolved"]
    if not un.empty:
        out.append(f"At η = {lr_list(un['learning_rate'], grid)} the sharpness started above {eta} and neither hovered "
                   f"at it nor fell under half of it (last {span(un['ratio_end'].min(), un['ratio_end'].max(), '.2g')}× "
                   f"{eta}).")
    return out


def _findings_failed(ok: pd.DataFrame, grid: list, eta: str) -> list[str]:
    """Runs named for what their loss did, not for their sharpness: collapsed to chance, or unstable."""
    out = []
    col = ok[ok["regime"] == "collapsed"]
    for k, g in col.groupby("chance_k"):
        n = len(g)
        out.append(f"Collapsed at η = {lr_list(g['learning_rate'], grid)} ({n} run{'s' if n > 1 else ''}): the full "
                   f"loss sits flat at {span(g['end_loss'].min(), g['end_loss'].max(), '.4g')}, chance for {int(k)} "
                   f"classes (ln {int(k)} = {np.log(k):.4g}: one constant prediction for every input), with the "
                   f"gradient norm at {g['grad_ratio'].max():.1g} of its start or less; the sharpness "
                   f"({span(g['ratio_end'].min(), g['ratio_end'].max(), '.2g')}× {eta} at the end) fell because the "
                   f"network stopped responding to its input, not by a catapult.")
    un = ok[ok["regime"] == "unstable"]
    if not un.empty:
        out.append(f"Unstable at η = {lr_list(un['learning_rate'], grid)} ({len(un)} run{'s' if len(un) > 1 else ''}): "
                   f"{UNSTABLE_WORDS} (from {span(un['loss_0'].min(), un['loss_0'].max())} at the start to "
                   f"{span(un['end_loss'].min(), un['end_loss'].max())} at the end); counted as diverged for the "
                   f"boundary, and the sharpness of such a run is not read as a regime.")
    return out


MCCANDLISH_CAVEAT = ("Caveat (McCandlish et al. 2018): B_crit equals the noise scale averaged along training only in "
                     "their idealised model (a local quadratic, the best step size at every batch size); B_simple "
                     "= tr(Σ)/|G|² equals the Hessian-aware B_noise = tr(HΣ)/(GᵀHG) only when the Hessian is a "
                     "multiple of the identity, and the paper itself finds B_simple off by up to an order of magnitude.")


def findings_critical_paths(target: float, fit: dict | None, reason: str, paths: dict[str, pd.DataFrame],
                            missing_noise: str) -> str:
    """B_crit (fitted, with its 90% interval) against the path averages of B_noise and B_simple.

    ``fit``: name -> ``uncertainty.Interval`` (None: no fit); ``paths``: measured key ->
    ``noise_scales.noise_path_average`` frame.
    """
    from .uncertainty import Interval

    parts = [f"Critical batch size for loss {target:g}:"]
    if fit is None or not np.isfinite(fit["b_crit"].point):
        parts.append(f"B_crit could not be fitted ({reason or 'fewer than 3 tuned batch sizes reached the target'}).")
        bc = Interval(np.nan, np.nan, np.nan, 1.0)
    else:
        bc = fit["b_crit"]
        parts.append(f"the fit S = S_min + E_min/B over the tuned batch sizes gives B_crit = E_min/S_min = "
                     f"{bc.text()} (S_min = {fit['s_min'].text()} steps, E_min = {fit['e_min'].text()} examples; "
                     f"intervals: bootstrap over seeds, with the coverage it reaches).")
        if np.isfinite(fit["b_noise"].point):
            parts.append("The learning-rate fit ε_opt = ε_max/(1 + B_noise/B) gives B_noise (ε fit) = "
                         f"{fit['b_noise'].text()}.")
    names = {"hessian_noise_scale": "B_noise = tr(HΣ)/(GᵀHG)", "gradient_noise_scale": "B_simple = tr(Σ)/|G|²"}
    any_path = False
    for key, name in names.items():
        p = paths.get(key)
        v = p["path_average"].dropna() if p is not None and not p.empty else pd.Series(dtype=float)
        if v.empty:
            why = ("no full-batch run reached the target with it measured" if p is None or p.empty else
                   "no measurement with loss above the target and |G| ≥ 1% of its start")
            if p is None or p.empty:
                why = missing_noise if key == "gradient_noise_scale" and missing_noise else \
                    "not measured (diagnostics.hessian_noise_scale = false)" if key == "hessian_noise_scale" else why
            parts.append(f"Path average of {name}: not available: {why}.")
            continue
        any_path = True
        med = float(np.median(v))
        rng = f"; runs {v.min():.3g}–{v.max():.3g}" if len(v) > 1 else ""
        cmp = ""
        if np.isfinite(bc.point):
            if bc.ok and np.isfinite(bc.hi):
                inside = bc.lo <= med <= bc.hi
                cmp = (f" — inside B_crit's interval ({bc.label()})" if inside else
                       f" — {max(med / bc.hi, bc.lo / med):.2g}× outside B_crit's interval ({bc.label()})")
            else:
                cmp = f" — {med / bc.point:.2g}× B_crit (no interval: {bc.why or 'not resolved'})"
        k = p.loc[p["path_average"].notna(), "learning_rate"].nunique() if "learning_rate" in p else 0
        at = f" at {k} learning rates" if k > 1 else ""
        parts.append(f"Path average of {name} over full-batch training before the target (step-weighted, median "
                     f"over {len(v)} run{'s' if len(v) > 1 else ''}{at}{rng}): {med:.3g}{cmp}.")
    if any_path or np.isfinite(bc.point):
        parts.append(MCCANDLISH_CAVEAT)
    return " ".join(parts)
