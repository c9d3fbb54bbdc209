"""Sections on the learning rate across batch sizes: where ``"auto"`` placed the grid, and the
scaling rule η* ∝ B^α (``analysis.lr_rule``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import lr_rule as LR
from .. import refinement
from ..prose import bs_text
from .context import Context


def rule_text(r: LR.Rule, target: float, full: int | None) -> list[str]:
    """Two findings: α with its interval and the rules inside it; where η* stops growing."""
    a = r.alpha
    s = (f"Loss {target:g}: η* ∝ B^α with α = {a.text('.2f')}, fitted to {len(r.batch_sizes)} batch sizes "
         f"({min(r.batch_sizes):,}–{max(r.batch_sizes):,})")
    if a.ok:
        name = {n: f"the {n} rule (α = {LR.HALF.get(v, f'{v:g}')}, {who})" for n, v, who in LR.RULES}
        inside = [name[n] for n, _, _ in LR.RULES if r.inside[n]]
        outside = [name[n] for n, _, _ in LR.RULES if not r.inside[n]]
        if not outside:
            s += f": {' and '.join(inside)} are both inside the interval (these seeds and this grid cannot tell them apart)"
        elif inside:
            s += f": {inside[0]} is inside the interval, {outside[0]} is not"
        else:
            s += f": neither {' nor '.join(outside)} is inside the interval"
    crit = (f"the critical batch size fitted from steps and examples, B_crit = {r.b_crit:,.0f}"
            if np.isfinite(r.b_crit) else "no critical batch size could be fitted")
    if r.stops_at is not None:
        rel = f", {r.stops_at / r.b_crit:.2g}× " if np.isfinite(r.b_crit) else "; "
        stop = f"Loss {target:g}: η* stops growing at {bs_text(r.stops_at, full)}{rel}{crit}."
    else:
        stop = f"Loss {target:g}: η* still grows at the largest batch size fitted ({bs_text(r.largest, full)}); {crit}."
    return [s + ".", stop]


def scaling_rule(ctx: Context):
    """η* ∝ B^α per group and target, with α's interval and the linear and square-root rules."""
    ctx.rep.h2("Learning-rate scaling rule")
    found: list[str] = []
    ctx.rep.ul(found)
    first = None
    for g in ctx.gd_groups:
        for t in ctx.targets:
            r = LR.rule(g, t)
            if r is not None:
                found += [g.prefix(x) for x in rule_text(r, t, g.full)]
                first = first or (g, r, t)
    if not found:
        found.append(f"Fewer than {LR.MIN_POINTS} batch sizes have a tuned best learning rate that reached a "
                     "target: no rule can be fitted.")
        return
    g, r, t = first
    rules = [name for name, _, _ in LR.RULES if r.inside[name]]
    ctx.headlines.append(g.prefix(f"Scaling rule at loss {t:g}: η* ∝ B^{r.alpha.point:.2f} "
                                  f"({r.alpha.ends('.2f')}): " + (f"the {' and the '.join(rules)} rule inside"
                                                                 if rules else "neither the linear nor the "
                                                                 "square-root rule inside") + "."))


def placement(ctx: Context):
    """Where ``learning_rate = "auto"`` placed the first grid, and how far each optimum lay from its bound."""
    p = ctx.variant.placement
    ctx.rep.h2("Where the grid was placed")
    lrs = p["learning_rates"]
    ctx.rep.p(f'learning_rate = "auto" measured the sharpness at initialisation, λ_max = {p["sharpness"]:.3g} '
              f'(the largest of {p["seeds"]} seed(s); {p["iters"]} Lanczos iterations on {p["examples"]:,} '
              f'training examples), and placed the first grid below the stability bound of {p["optimizer"]}, '
              f'{p["factor"]:g}/λ_max = {p["bound"]:.3g}: {len(lrs)} learning rates {lrs[0]:g}–{lrs[-1]:g}, '
              f'×{p["spacing"]:g} apart.'
              + (" The refinement then tuned it per batch size." if refinement.settings(ctx.variant.resolved) else ""))
    rows = []
    for g in ctx.gd_groups:
        for t in ctx.targets:
            b = g.bests.get(t)
            for _, row in (b[b["reached"]] if b is not None else pd.DataFrame()).iterrows():
                rows.append({**g.values, "target": f"{t:g}", "batch size": bs_text(int(row["batch_size"]), g.full),
                             "best η": f"{row['learning_rate']:.3g}",
                             "η / bound": f"{row['learning_rate'] / p['bound']:.2f}",
                             "inside the grid": "yes" if row["tuned"] else f"no ({row['edge']} tried)"})
    if rows:
        ratio = [float(r["η / bound"]) for r in rows]
        ctx.rep.ul([f"The best learning rates lay at {min(ratio):.2f}–{max(ratio):.2f}× the bound at "
                    f"initialisation ({sum(x > 1 for x in ratio)} of {len(ratio)} cells above it: "
                    "the bound is where the grid starts, not a ceiling)."])
    ctx.rep.table("The best learning rate against the bound at initialisation (target × batch size)",
                  pd.DataFrame(rows), "placement")
