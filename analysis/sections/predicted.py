"""Predicted versus measured: the divergence boundary from 2/λ_max, the sharpness over
full-batch training against 2/η, and the critical batch size against the measured noise
scales, per gradient group."""

from __future__ import annotations

import pandas as pd

from bpresearch import keys as R

from .. import sharpness as S
from ..boundary import bound_labels
from ..figures import diagnostics as FD
from ..groups import Group
from ..noise_scales import noise_path_average
from ..prose_predicted import (
    findings_boundary,
    findings_critical_paths,
    findings_sharpness,
)
from ..render import Report
from ..tables import critical_table, predicted_table
from .context import Context, of, sfx

METHOD = ("Measured, on a grid: the divergence boundary lies between the highest learning rate at which no seed "
          "diverged and the lowest at which some seed did; the table gives that bracket and its geometric midpoint, "
          "and the prediction is judged by whether it falls inside. Critical batch size: B_crit = E_min/S_min is "
          "fitted to the best learning rate per tuned batch size (S = S_min + E_min/B, McCandlish et al. 2018), with "
          "a bootstrap interval over seeds labelled with the coverage it reached on planted data; under that model B_crit is the noise scale averaged along "
          "training, so it is set beside the step-weighted path averages of the measured noise scales, B_noise = "
          "tr(HΣ)/(GᵀHG) and B_simple = tr(Σ)/|G|², taken only where the loss was above the target and |G| ≥ 1% of "
          "its start.")


def predicted(ctx: Context):
    """How the predictions are judged, then each gradient group's; the first group's boundary is a headline."""
    ctx.rep.h2("Predicted versus measured")
    ctx.rep.p(METHOD)
    for g in ctx.gd_groups:
        if g.label:
            ctx.rep.h3(g.label)
        _group(ctx.rep, g, g.runs[g.runs["optimizer"] != "random_search"]["batch_size"].nunique())
        if g is ctx.gd_groups[0] and g.pred.cmp is not None:
            lines = findings_boundary(g.pred.cmp, g.pred.init, g.full)
            ctx.headlines.extend([g.prefix(lines[0])] if lines and len(ctx.headlines) < 5 else [])


def _group(rep: Report, g: Group, n_bs: int):
    """Table, edge-of-stability figure, noise scales and fits of one group."""
    pred, full = g.pred, g.full
    findings: list[str] = []
    rep.ul(findings)
    if pred.every is None:
        rep.p(f"Nothing is predicted: {pred.missing_boundary}. A [diagnostics] section with sharpness = true and "
              "noise_scale = true predicts the divergence boundary (2/λ_max) and the critical batch size (B_simple).")
        return
    if pred.cmp is not None:
        findings += findings_boundary(pred.cmp, pred.init, full)
    else:
        findings.append(f"The divergence boundary is not predicted: {pred.missing_boundary}.")
    factor = pred.init["factor"] if pred.init is not None else 2.0
    regimes = S.sharpness_regimes(g.curves, g.runs, factor)
    findings += findings_sharpness(regimes, factor, pred.every, S.EOS_BAND, S.EOS_STRETCH)
    if n_bs < 2:
        findings.append("The critical batch size is not compared: one batch size was run, so B_crit cannot be "
                        "fitted.")
    critical_rows = _critical_rows(g) if n_bs >= 2 else []
    findings += [findings_critical_paths(*row, pred.missing_noise) for row in critical_rows]
    rep.table("Predicted vs measured: the divergence boundary", predicted_table(
        pred.cmp, pred.init, full, [], pred.missing_boundary, ""))
    if critical_rows:
        rep.table("Critical batch size: fitted from the sweep (bootstrap intervals over seeds, with their coverage) against noise scales "
                  "measured along full-batch training", critical_table(critical_rows))
    _, eta = bound_labels(factor)
    rep.figure(f"edge_of_stability{sfx(g)}", f"Full batch: sharpness over training against {eta} (edge of stability)"
               + of(g), lambda: FD.edge_of_stability(g.curves, pred.eos, eta))
    if not regimes.empty:
        rep.table(f"Sharpness of full-batch runs ÷ {eta} (medians over seeds; edge of stability: rose from below "
                  f"into ±{S.EOS_BAND:.0%} and stayed ≥ {S.EOS_STRETCH} measurements, to the last)",
                  _regimes_table(regimes, eta))


def _critical_rows(g: Group) -> list[tuple]:
    """Per target: (target, bootstrap fit or None, why B_crit is missing, noise-scale path averages)."""
    rows = []
    for t in g.targets:
        t_table = g.distinct_table[g.distinct_table["target"] == t]
        paths = {k: noise_path_average(g.curves, g.runs, t_table, k) for k in (R.HESSIAN_NOISE_SCALE, R.NOISE_SCALE)}
        fit = next(iter(g.intervals[t].fits.values()), None) if t in g.intervals else None
        reason = g.pred.critical[t][2].steps_examples.reason if t in g.pred.critical else ""
        rows.append((t, fit, reason or "", paths))
    return rows


def _regimes_table(regimes: pd.DataFrame, eta: str) -> pd.DataFrame:
    """What the sharpness did, per learning rate: medians over seeds of its ratios to the bound."""
    e = regimes.groupby(["learning_rate", "regime"]).agg(
        seeds=("seed", "size"), r0=("ratio_0", "median"), rmin=("ratio_min", "median"),
        rmax=("ratio_max", "median"), rend=("ratio_end", "median"), edge=("edge_steps", "first"),
        drop=("drop_step", "min"), last_step=("last_step", "max")).reset_index()
    e["drop"] = e["drop"].map(lambda x: "—" if x < 0 else str(int(x)))
    e["edge"] = e["edge"].replace("", "—")
    for col in ("r0", "rmin", "rmax", "rend"):
        e[col] = e[col].map(lambda x: f"{x:.3g}")
    return e.rename(columns={"learning_rate": "learning rate η", "regime": "what the sharpness did",
                             "seeds": "runs", "r0": f"step 0 ÷ {eta}", "rmin": f"min ÷ {eta}",
                             "rmax": f"max ÷ {eta}", "rend": f"last ÷ {eta}",
                             "edge": "longest stretch in band (steps)", "drop": "fell under half at step",
                             "last_step": "last measured step"})
