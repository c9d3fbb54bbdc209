"""The report's tables: frames of ``measures`` and ``predictions`` → rows a reader reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .boundary import bound_labels
from .prose import bs_label, bs_text, fmt_steps, plural, steps_interval_text
from .prose_predicted import bracket_text, position_text, ratio_words


# ---------------------------------------------------------------- predicted against measured
def predicted_table(cmp: pd.DataFrame | None, init: pd.Series | None, full: int | None, critical: list,
                    missing_boundary: str, missing_critical: str = "") -> pd.DataFrame:
    """Rows "quantity, predicted, measured, predicted ÷ measured, agreement" for every prediction.

    Args:
        cmp: ``boundary.compare_boundary`` (None: no prediction of the boundary).
        init: ``boundary.stability_at_init`` row (None likewise).
        full: the full batch size, if any.
        critical: (target, headline B_simple row or None, ``CriticalFits``, why B_simple is missing).
        missing_boundary: why the boundary is not predicted, when ``cmp`` is None.
        missing_critical: why the critical batch size is not compared at all ("" when it is).
    """
    rows = []
    if cmp is None:
        rows.append(["divergence boundary", f"not available: {missing_boundary}", "—", "—", "—"])
    else:
        lam, _ = bound_labels(init["factor"])
        for r in sorted(cmp.itertuples(), key=lambda r: r.batch_size != full):
            where = "full batch" + f" ({r.batch_size})" if r.batch_size == full else \
                f"batch size {r.batch_size} (bound derived for full batch)"
            rows.append([f"divergence boundary, {where}", f"{lam}(0) = {init['stability_lr']:.3g}", bracket_text(r),
                         f"{r.ratio:.2g}" if np.isfinite(r.ratio) else "— (bracket open)", position_text(r)])
    if missing_critical:
        rows.append(["critical batch size", "—", "—", "—", f"not compared: {missing_critical}"])
    for target, head, fits, missing in critical:
        ce, lr = fits.steps_examples, fits.lr_scaling
        b_simple = (f"B_simple = {head['b_simple']:.3g} ({bs_text(int(head['batch_size']), full)}, step"
                    f"{'s' if ',' in head['measured_steps'] else ''} {head['measured_steps']}; target reached at "
                    f"{fmt_steps(head['target_step'])})"
                    if head is not None else f"B_simple not available: {missing}")
        b_crit = f"B_crit = E_min/S_min = {ce.b_crit:.3g} ({ce.n_points} batch sizes)" if not ce.reason else \
            f"B_crit not fitted: {ce.reason}"
        b_noise = f"B_noise = {lr.b_noise:.3g} (learning-rate fit)" if not lr.reason else \
            f"B_noise not fitted: {lr.reason}"
        bs = head["b_simple"] if head is not None else np.nan
        for name, pred, meas, a, b in (("B_simple vs B_crit", b_simple, b_crit, bs, ce.b_crit),
                                       ("B_simple vs B_noise", b_simple, b_noise, bs, lr.b_noise),
                                       ("B_noise vs B_crit", b_noise, b_crit, lr.b_noise, ce.b_crit)):
            r = a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else np.nan
            rows.append([f"critical batch size, loss {target:g}: {name}", pred, meas,
                         f"{r:.2g}" if np.isfinite(r) else "—", ratio_words(r)])
    return pd.DataFrame(rows, columns=["quantity", "predicted", "measured", "predicted ÷ measured", "agreement"])


# ---------------------------------------------------------------- steps to target
def _cell_iv(r) -> str:
    """A best cell's interval over seeds for a table: ``5–8 (range of 3 seeds: 75% interval)``."""
    from .uncertainty import row_interval

    iv = row_interval(r)
    if not np.isfinite(iv.point):
        return "—"
    return f"{iv.ends(',.0f')} ({iv.label()})" if iv.ok else f"no interval ({iv.why or 'one seed'})"


def best_table(best: pd.DataFrame, full: int | None, distinct: pd.DataFrame | None = None) -> pd.DataFrame:
    rows = []
    for r in best.to_dict("records"):
        d = "—"
        if distinct is not None and r["reached"]:
            m = distinct[(distinct["batch_size"] == r["batch_size"]) & np.isclose(distinct["learning_rate"],
                                                                                  r["learning_rate"])]
            d = f"{int(m['distinct'].iloc[0])} of {int(m['runs'].iloc[0])}" if not m.empty else "—"
        ok = r["reached"]
        rows.append({"batch size": bs_label(r["batch_size"], full),
                     "best learning rate": f"{r['learning_rate']:.3g}" if ok else "—",
                     "tuned?": ("yes" if r["tuned"] else f"not tuned: optimum at the grid's edge ({r['edge']}); add "
                                f"{r['add']}") if ok else "—",
                     "steps to target (median)": steps_interval_text(r["steps_lo"], r["steps"]),
                     "median's interval over seeds": _cell_iv(r) if ok else "—",
                     "steps, seeds min–max": span_steps(r["steps_min"], r["steps_max"]) if ok else "—",
                     "examples to target (median)": fmt_steps(r["examples"]),
                     "seeds reached": f"{r['n_reached']}/{r['n']}",
                     "distinct trajectories": d,
                     "learning rates tried": str(r["n_lrs"])})
    return pd.DataFrame(rows)


def span_steps(lo: float, hi: float) -> str:
    """``5–8``, ``5`` when every seed took the same, ``5–not reached`` when some seed did not reach."""
    a, b = fmt_steps(lo), fmt_steps(hi)
    return a if a == b else f"{a}–{b}"


def scaling_table(best: pd.DataFrame, per_group: pd.DataFrame, full: int | None) -> pd.DataFrame:
    """Per batch size: the best cell's median steps (as in the best-learning-rate table) and the
    scaling efficiency, each with its interval over seeds and the coverage it reaches."""
    from .uncertainty import Interval, classify

    rows = []
    for r in per_group.sort_values("batch_size").to_dict("records"):
        ok = bool(r["reached"]) and bool(r["tuned"])
        iv = Interval(r["efficiency"], r["efficiency_lo"], r["efficiency_hi"], 0.0, r["efficiency_level"])
        ref = r.get("efficiency_how") == "reference"
        eff_iv = ("— (the reference)" if ref else f"{iv.ends('.2f')} ({iv.label()})" if ok and iv.ok else
                  f"no interval ({r.get('efficiency_how') or 'one seed'})" if ok and np.isfinite(iv.point) else "—")
        rows.append({"batch size": bs_label(r["batch_size"], full),
                     "tuned?": "yes" if r["tuned"] else ("not tuned (grid edge)" if r["reached"] else "not reached"),
                     "steps (median)": fmt_steps(r["steps"]) if r["reached"] else "—",
                     "median's interval over seeds": _cell_iv({**r, "iv_lo": r["steps_lo"], "iv_hi": r["steps_hi"]})
                     if r["reached"] else "—",
                     "scaling efficiency": f"{iv.point:.2f}" if ok and np.isfinite(iv.point) else "—",
                     "efficiency interval": eff_iv,
                     "within 2× of perfect scaling?": ("— (the reference)" if ref else classify(iv, 0.5, "yes", "no"))
                     if ok else "— (left out)",
                     "same best η in bootstrap resamples": f"{r['best_lr_share']:.0%}",
                     "distinct trajectories in best cell": str(int(r["seeds"])) if np.isfinite(r["seeds"]) else "—"})
    return pd.DataFrame(rows)


def critical_table(rows_in: list) -> pd.DataFrame:
    """One row per target: B_crit fitted with its interval, and the path averages of both noise scales."""
    rows = []
    for target, fit, reason, paths in rows_in:
        def path(key):
            p = paths.get(key)
            v = p["path_average"].dropna() if p is not None and not p.empty else []
            return f"{np.median(v):.3g} (median of {plural(len(v), 'run')})" if len(v) else "not available"
        ok = fit is not None and np.isfinite(fit["b_crit"].point)
        rows.append({"target loss": f"{target:g}",
                     "B_crit = E_min/S_min (fit; bootstrap interval, its coverage)": fit["b_crit"].text() if ok else
                     f"fit failed: {reason or 'fewer than 3 tuned batch sizes'}",
                     "S_min (steps)": fit["s_min"].text() if ok else "—",
                     "E_min (examples)": fit["e_min"].text() if ok else "—",
                     "B_noise from the ε_opt(B) fit": fit["b_noise"].text() if fit is not None else "—",
                     "path average of B_noise = tr(HΣ)/(GᵀHG), measured": path("hessian_noise_scale"),
                     "path average of B_simple = tr(Σ)/|G|², measured": path("gradient_noise_scale")})
    return pd.DataFrame(rows)


def divergence_table(frac: pd.DataFrame, full: int | None) -> pd.DataFrame:
    """The cells (batch size × learning rate) where some run diverged."""
    shown = frac[frac["n_diverged"] > 0] if not frac.empty else frac
    if shown.empty:
        return pd.DataFrame()
    return pd.DataFrame({"batch size": [f"full ({b})" if b == full else str(b) for b in shown["batch_size"]],
                         "learning rate": [f"{x:.3g}" for x in shown["learning_rate"]],
                         "runs": shown["n"].astype(int).to_numpy(), "diverged": shown["n_diverged"].to_numpy(),
                         "share diverged": [f"{x:.0%}" for x in shown["fraction"]]})


def with_facets(frame: pd.DataFrame, facets: list[str], table_of, keep_optimizer: bool = True,
                empty: str = "Nothing to show.") -> pd.DataFrame:
    """``table_of`` applied to each group of ``frame`` (its ``group`` column), the facet values as first columns.

    Args:
        frame: the groups' frames one after the other (``groups.combined``), with a column per facet.
        facets: the variant's facets (may be empty).
        table_of: frame of one group -> the table a reader reads.
        keep_optimizer: keep a table's ``optimizer`` column (dropped anyway when ``optimizer.kind`` is a facet).
        empty: the one-cell table's text when no group has a row.
    """
    if frame is None or frame.empty:
        return pd.DataFrame({"": [empty]})
    parts = []
    for _, g in frame.groupby("group", sort=False) if "group" in frame else [("", frame)]:
        t = table_of(g)
        if t.empty:
            continue
        if "optimizer" in t and ("optimizer.kind" in facets or not keep_optimizer and t["optimizer"].nunique() == 1):
            t = t.drop(columns="optimizer")
        for i, f in enumerate(facets):
            v = g[f].iloc[0]
            t.insert(i, f, f"{v:g}" if isinstance(v, (int, float, np.integer, np.floating)) else str(v))
        parts.append(t)
    if not parts:
        return pd.DataFrame({"": [empty]})
    return pd.concat(parts, ignore_index=True)


def outcome_table(cell: pd.DataFrame, target: float, full: int | None) -> pd.DataFrame:
    """Per batch size: how many runs reached the target (of them, ended above it again), reached it and
    then diverged, did not reach it, and diverged (``verdicts.OUTCOMES``)."""
    c = cell[cell["target"] == target]
    rows = []
    for (opt, bs), g in c.groupby(["optimizer", "batch_size"]):
        n = int(g["n"].sum())
        reached, lost, after, div = (int(g[k].sum()) for k in ("n_reached", "n_lost", "n_diverged_after", "n_diverged"))
        rows.append({"optimizer": opt, "batch size": f"full ({bs})" if bs == full else str(bs), "runs": n,
                     "reached": reached, "of which ended above it again": lost, "reached, then diverged": after,
                     "not reached (no divergence)": n - reached - after - div, "diverged": div})
    return pd.DataFrame(rows)
