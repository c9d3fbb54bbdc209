"""``summary.json``: a report's numbers for notebooks and other tools (no HTML scraping).

Schema (documented in docs/reports.md; the required keys are fixed, more may be added):

    {"experiment": name, "variants": [
        {"overrides": {section.key: value}  ({} for the base sweep), "facets": [section.key, …],
         "label", "slug", "base", "runs", "runs_diverged", "headlines": [sentence, …],
         "cells": [{"batch_size": int, <facet>: value, …, "full_batch", "runs", "runs_diverged", "seeds",
                    "learning_rates_tried": [..],
                    "targets": {"<target loss>": {"best_learning_rate", "steps_median", "steps_min",
                                                  "steps_max", "examples_median", "seeds_reached", "seeds",
                                                  "best_at_grid_edge", "edge_of_grid", "steps_interval",
                                                  "interval", "scaling", "noise_floor"}}}],
         "fits": [{<facet>: value, …, "target", "s_min", "e_min", "b_crit", "eps_max", "b_noise",
                   "intervals", "reason", "inputs": [{"batch_size", "learning_rate", "steps", "examples"}]}],
         "predictions": [{<facet>: value, …, "stability_lr_at_init", "sharpness_at_init", "seeds",
                          "boundary": [{"batch_size", "highest_stable", "lowest_diverged", "position"}],
                          "b_simple": {"<target loss>": value}}]}]}

``null`` stands for "not reached" / "not available": never a number that could be mistaken for one.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpresearch import keys as R

from . import lr_rule
from . import measures as M
from . import uncertainty as U
from .shapes import noise_floor


def jsonable(v):
    """numpy scalars → Python; NaN and ±inf → None (JSON has neither)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def _target_entry(best_row, lrs: list[float], random_search: bool, scaling=None) -> dict:
    empty = {"best_learning_rate": None, "steps_median": None, "steps_min": None, "steps_max": None,
             "examples_median": None, "seeds_reached": 0, "seeds": 0, "best_at_grid_edge": None,
             "edge_of_grid": None, "steps_interval": None}
    if best_row is None:
        return empty
    ok = bool(best_row["reached"])
    lr = best_row["learning_rate"] if ok and not random_search else None
    edge = best_row.get("edge", "") if lr is not None else None
    out = {**empty, "best_learning_rate": lr,
           "steps_median": best_row["steps"] if ok else None,
           "steps_min": best_row["steps_min"] if ok else None,
           "steps_max": best_row["steps_max"] if ok else None,   # None also when some seed did not reach
           "examples_median": best_row["examples"] if ok else None,
           "seeds_reached": int(best_row["n_reached"]), "seeds": int(best_row["n"]),
           # "smallest"/"largest": the optimum may lie outside the grid (not tuned); "" inside
           "edge_of_grid": edge, "best_at_grid_edge": None if edge is None or len(lrs) < 2 else bool(edge),
           # the first crossing lies in [lo, steps]: last evaluation above the target + 1, first below
           "steps_interval": [best_row.get("steps_lo", best_row["steps"]), best_row["steps"]] if ok else None}
    if ok and best_row.get("iv_level") is not None:
        has = np.isfinite(best_row.get("iv_lo", np.nan))
        out["interval"] = {"steps": [best_row["iv_lo"], best_row["iv_hi"]] if has else None,
                           "coverage": best_row["iv_level"] if has else None,
                           "what": best_row.get("iv_how") or None, "why_none": best_row.get("iv_why") or None,
                           "distinct_trajectories": best_row.get("distinct")}
    if scaling is not None and ok:
        left_out = not bool(scaling.get("tuned"))
        ref = scaling.get("efficiency_how") == "reference"
        has = np.isfinite(scaling.get("efficiency_lo", np.nan)) and not left_out
        out["scaling"] = {"efficiency": None if left_out else scaling.get("efficiency"), "reference": ref,
                          "efficiency_interval": [scaling["efficiency_lo"], scaling["efficiency_hi"]] if has else None,
                          "efficiency_coverage": scaling.get("efficiency_level") if has else None,
                          "left_out": left_out, "best_learning_rate_share": scaling.get("best_lr_share")}
    return out


def _floors(g, t: float) -> dict:
    """batch size -> the noise floor of its best runs where the target ``t`` lies in it
    (``shapes.noise_floor``): ``{"learning_rate", "lo", "hi", "runs"}``; absent: not in the floor."""
    best = g.bests.get(t)
    if g.steps is None or g.curves.empty or best is None or best.empty or not np.isfinite(t):
        return {}
    table = g.steps.table
    fl = noise_floor(g.curves, table[table["target"] == t], best)
    return {int(r.batch_size): {"learning_rate": r.learning_rate, "lo": r.floor_lo, "hi": r.floor_hi, "runs": r.runs}
            for r in fl.itertuples()}


def steps_from(g, t: float) -> str:
    """Where a group's steps to ``t`` come from: "sweep" (the in-program count) or "curve" (the logged curve)."""
    return "curve" if g.steps is not None and t in g.steps.curve_targets else "sweep"


def variant_summary(variant, groups) -> dict:
    """The ``summary.json`` entry of one variant from its groups (``groups.Group``)."""
    out = {"overrides": dict(variant.overrides), "facets": list(variant.facets), "label": variant.label,
           "slug": variant.slug, "base": bool(variant.base), "runs": int(len(variant.runs)),
           "runs_diverged": int(variant.runs["diverged"].sum()) if "diverged" in variant.runs else 0,
           "cells": [], "fits": [], "predictions": [], "headlines": []}
    for g in groups:
        rs = g.runs["optimizer"].eq("random_search").all()
        bests = g.bests if not rs else {t: M.best_learning_rate(g.cell, t) for t in g.targets}
        floors = {t: _floors(g, t) for t in g.targets} if not rs else {}
        for bs, rb in g.runs.groupby("batch_size", sort=True):
            lrs = sorted(rb["learning_rate"].unique())
            cell = {"batch_size": int(bs), **{f: v for f, v in g.values.items()},
                    "full_batch": g.full is not None and int(bs) == g.full, "runs": len(rb),
                    "runs_diverged": int(rb["diverged"].sum()), "seeds": int(rb["seed"].nunique()),
                    "learning_rates_tried": lrs, "targets": {}}
            for t in g.targets:
                b = bests[t]
                row = b[b["batch_size"] == bs]
                sc = None
                if t in getattr(g, "intervals", {}):
                    pg = g.intervals[t].per_group
                    hit = pg[pg["batch_size"] == bs] if "batch_size" in pg else pg.iloc[:0]
                    sc = hit.iloc[0].to_dict() if not hit.empty else None
                entry = _target_entry(row.iloc[0] if not row.empty else None, lrs, rs, sc)
                # the target sits in the noise floor of the best runs: their last evaluations span it
                entry["noise_floor"] = floors.get(t, {}).get(int(bs))
                # "sweep": counted in the compiled program; "curve": a target asked afterwards, its steps
                # from the logged full_train_loss curve, between two evaluations (analysis.crossings)
                entry["steps_from"] = steps_from(g, t)
                cell["targets"][R.target_key(t)] = entry
            out["cells"].append(cell)
        if rs or g.pred is None:
            continue
        for t, (near, head, fits) in g.pred.critical.items():
            b = g.bests[t]
            ce, lr = fits.steps_examples, fits.lr_scaling
            boot = next(iter(g.intervals[t].fits.values()), None) if t in getattr(g, "intervals", {}) else None
            out["fits"].append({**g.values, "target": R.target_key(t), "s_min": ce.s_min, "e_min": ce.e_min,
                                "b_crit": ce.b_crit, "eps_max": lr.eps_max, "b_noise": lr.b_noise,
                                "intervals": {k: {"point": v.point, "interval": [v.lo, v.hi] if v.ok else None,
                                                  "coverage": v.level if v.ok else None, "what": v.how or None,
                                                  "why_none": v.why or None}
                                              for k, v in boot.items()} if boot else None,
                                "reason": "; ".join(x for x in (ce.reason, lr.reason) if x),
                                "inputs": [{"batch_size": int(r["batch_size"]), "learning_rate": r["learning_rate"],
                                            "steps": r["steps"], "examples": r["examples"]}
                                           for _, r in U.fit_inputs(b).iterrows()]})
        p = g.pred
        if p.every is not None:
            entry = {**g.values, "stability_lr_at_init": p.init["stability_lr"] if p.init is not None else None,
                     "sharpness_at_init": p.init["sharpness"] if p.init is not None else None,
                     "seeds": int(p.init["n_seeds"]) if p.init is not None else 0,
                     "missing": p.missing_boundary or None, "boundary": [], "b_simple": {}}
            if p.cmp is not None:
                entry["boundary"] = [{"batch_size": int(r["batch_size"]), "highest_stable": r["highest_stable"],
                                      "lowest_diverged": r["lowest_diverged"], "position": r["position"]}
                                     for _, r in p.cmp.iterrows()]
            for t, (near, head, fits) in p.critical.items():
                entry["b_simple"][R.target_key(t)] = head["b_simple"] if head is not None else None
            out["predictions"].append(entry)
    out["scaling_rule"] = lr_rule.summary(groups, groups[0].targets if groups else [])
    out["placement"] = getattr(variant, "placement", None)   # learning_rate = "auto": spec.auto.Placement
    return jsonable(out)


def experiment_summary(name: str, variants: list[dict]) -> dict:
    return {"experiment": name, "variants": variants}


def frame_of(summary: dict) -> pd.DataFrame:
    """``summary.json`` as one row per variant × cell × target: what a notebook would do with it."""
    rows = []
    for v in summary["variants"]:
        for c in v["cells"]:
            for t, e in c["targets"].items():
                rows.append({"variant": v["label"], **{k: x for k, x in c.items() if k != "targets"},
                             "target": t, **e})
    return pd.DataFrame(rows)
