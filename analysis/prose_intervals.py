"""Findings that compare cells through their intervals over seeds: a winner only outside the noise.

"Fewest", "fewer", "fastest" are said only when the intervals are apart
(``uncertainty.apart``); otherwise the settings are a tie and every one of them is named.
Each interval is given with the coverage it reaches (``uncertainty.Interval.label``); one
seed gives no interval and no verdict. Pure: numbers in, strings out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import uncertainty as U
from .prose import (
    _group_name,
    bs_label,
    bs_text,
    fmt_steps,
    plural,
    steps_interval_text,
)


def _iv(r) -> "U.Interval":
    return U.row_interval(r if isinstance(r, dict) else r.to_dict())


def _ivs_text(items: list[tuple[str, "U.Interval"]], fmt: str = ",.0f") -> str:
    """``A: 6 (5–8), B: 6 (5–7) (intervals: range of 3 seeds: 75% interval)``; the label once when all share it."""
    labels = {iv.label() for _, iv in items if iv.ok}
    one = len(labels) == 1
    parts = []
    for name, iv in items:
        ends = (f"{iv.ends(fmt)}" + ("" if one else f", {iv.label()}")) if iv.ok else \
            f"no interval: {iv.why or 'not resolved'}"
        parts.append(f"{name}: {fmt_steps(iv.point)} ({ends})")
    return "; ".join(parts) + (f" (intervals: {labels.pop()})" if one else "")


def ranked(rows: list[dict], scale=lambda r: 1.0) -> tuple[list[dict], list[dict]]:
    """Rows sorted by steps (× ``scale``): those tied with the fewest (intervals overlap, or either has
    none) and those beyond it (every tied row's interval wholly below theirs)."""
    rows = sorted(rows, key=lambda r: (r["steps"] * scale(r), r.get("steps_max", 0)))
    first = U.row_interval(rows[0], scale(rows[0]))
    tied = [r for r in rows if r is rows[0] or U.apart(first, U.row_interval(r, scale(r))) != -1]
    return tied, [r for r in rows if not any(r is t for t in tied)]


def findings_compare(best: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """Per batch size, the facet values (groups) side by side: the fewest median steps, or a tie.

    A group is named fastest only when its interval (``uncertainty.with_intervals``) lies
    wholly below every other group's; otherwise every group not resolved from it is named
    as tied.

    Args:
        best: ``measures.best_learning_rate`` of every group with its intervals, one after
            the other, with a ``group`` column naming each (``groups.combined``).

    Returns:
        One sentence per batch size, the batch size where the most groups reached the
        target first (ties: the smaller batch size).
    """
    if best.empty or best["group"].nunique() < 2:
        return []
    out = []
    for bs, g in best.groupby("batch_size", sort=True):
        ok = g[g["reached"]]
        miss = g[~g["reached"]]
        where = bs_text(int(bs), full)
        if ok.empty:
            out.append((0, bs, f"At {where} no group reached loss {target:g}: "
                               f"{', '.join(map(_group_name, g['group']))}."))
            continue
        tied, slower = ranked(ok.to_dict("records"))
        name = lambda r: f"{r['group']} (η={r['learning_rate']:.3g})"  # noqa: E731
        if len(ok) == 1:
            s = f"At {where}, loss {target:g} was reached only with {name(tied[0])}: {plural(tied[0]['steps'], 'step')}"
        elif len(tied) == 1:
            s = (f"At {where}, loss {target:g} was reached in the fewest median steps with {name(tied[0])}, "
                 f"beyond the seed spread: " + _ivs_text([(r["group"], _iv(r)) for r in tied + slower]))
        else:
            s = (f"At {where}, loss {target:g}: no fastest setting is resolved by these seeds — a tie between "
                 f"{len(tied)} settings, " + _ivs_text([(name(r), _iv(r)) for r in tied]))
            if slower:
                s += "; slower beyond the seed spread: " + ", ".join(name(r) for r in slower)
        if not miss.empty:
            s += f"; not reached with {', '.join(miss['group'])}"
        out.append((len(ok), bs, s + "."))
    out.sort(key=lambda x: (-x[0], x[1]))
    return [s for _, _, s in out]


def _seeds_spread(r) -> str:
    """``seeds: 3–5``, ``every seed 39``, ``one seed``, ``2 of 3 seeds reached it``."""
    if r["n"] == 1:
        return "one seed"
    if not np.isfinite(r["steps_max"]):
        return f"{int(r['n_reached'])} of {int(r['n'])} seeds reached it"
    lo, hi = fmt_steps(r["steps_min"]), fmt_steps(r["steps_max"])
    return f"every seed {lo}" if lo == hi else f"seeds: {lo}–{hi}"


def headline_fastest(best: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """The fastest cell overall (fewest median steps) and the one that needed the fewest examples;
    every cell whose interval is not apart from it is named as tied."""
    ok = best[best["reached"]] if not best.empty else best
    if ok.empty:
        return [f"No cell reached loss {target:g} at any learning rate tried."]
    def where(r):
        grp = f"{r['group']}, " if r.get("group") else ""
        edge = f" — the {r['edge']} η tried, so not tuned" if r.get("edge") in ("smallest", "largest") else ""
        return f"{grp}{bs_text(int(r['batch_size']), full)}, η={r['learning_rate']:.3g}{edge}"
    rows = ok.to_dict("records")
    tied, _ = ranked(rows)
    f = tied[0]
    if not _iv(f).ok:
        same = [r for r in rows if r["steps"] == f["steps"]]
        s = (f"Fewest median steps to loss {target:g}: {plural(f['steps'], 'step')} at "
             + "; ".join(where(r) for r in same) + f" ({_iv(f).why or 'no interval'}: no interval, so no setting is "
             "named fastest)")
        return [s + "."]
    if len(tied) == 1:
        iv = _iv(f)
        spread = iv.label() if iv.level >= 1 else f"{_seeds_spread(f)}; {iv.ends(',.0f')}, {iv.label()}"
        s = f"Fastest to loss {target:g}: {plural(f['steps'], 'step')} at {where(f)} ({spread})"
    else:
        s = (f"Fastest to loss {target:g}: not resolved by these seeds — {len(tied)} settings tie for the fewest "
             f"median steps: " + _ivs_text([(where(r), _iv(r)) for r in tied]))
    etied, _ = ranked(rows, scale=lambda r: float(r["batch_size"]))
    e = etied[0]
    if len(etied) > 1:
        s += (f"; fewest examples: not resolved, {len(etied)} settings tie: "
              + "; ".join(f"{where(r)} ({plural(r['examples'], 'example')})" for r in etied))
    elif e["batch_size"] != f["batch_size"] or e.get("group") != f.get("group") or len(tied) > 1:
        s += f"; fewest examples: {plural(e['examples'], 'example')} at {where(e)} ({plural(e['steps'], 'step')})"
    return [s + "."]


def grid_bound(r, cell: pd.DataFrame | None, target: float) -> str:
    """Where the learning-rate grid, not the seeds, bounds the best cell's steps: a neighbouring
    learning rate's median lies outside the best cell's interval ("" when not, or unknown)."""
    if cell is None or cell.empty or not r["reached"]:
        return ""
    c = cell[(cell["target"] == target) & (cell["batch_size"] == r["batch_size"])]
    if "optimizer" in c and "optimizer" in r:
        c = c[c["optimizer"] == r["optimizer"]]
    c = c.sort_values("learning_rate").reset_index(drop=True)
    i = np.flatnonzero(np.isclose(c["learning_rate"], r["learning_rate"]))
    iv = _iv(r)
    if not i.size or not iv.ok:
        return ""
    nb = c.iloc[[j for j in (i[0] - 1, i[0] + 1) if 0 <= j < len(c)]]
    out = nb[(nb["median_steps"] > iv.hi) | (nb["median_steps"] < iv.lo)]
    if out.empty:
        return ""
    ratio = (c["learning_rate"].iloc[-1] / c["learning_rate"].iloc[0]) ** (1 / max(len(c) - 1, 1))
    took = " and ".join(f"η = {x.learning_rate:.3g} {fmt_steps(x.median_steps)}" for x in out.itertuples())
    return (f" The learning-rate grid (×{ratio:.3g} apart) bounds this more than the seeds do: the neighbouring "
            f"{took} (median steps) lie outside the interval, so a learning rate between grid points may take "
            f"fewer steps.")


def findings_best_intervals(best: pd.DataFrame, target: float, budget: int, full: int | None,
                            distinct: pd.DataFrame | None = None, cell: pd.DataFrame | None = None) -> list[str]:
    """One sentence per batch size: the best learning rate, its median steps with their interval
    over seeds (``uncertainty.with_intervals``: the coverage it reaches, none from one seed), the
    edge flag, and where the grid bounds the answer (``grid_bound``; ``cell``: ``measures.cells``).

    ``distinct``: unused, kept for callers (the interval already counts distinct trajectories).
    """
    out = []
    for r in best.to_dict("records"):
        where = bs_text(r["batch_size"], full)
        if not r["reached"]:
            out.append(f"At {where} no learning rate reached loss {target:g} (and stayed below it) within "
                       f"{budget:,} steps (median over seeds; {plural(r['n_lrs'], 'learning rate')} tried).")
            continue
        steps = steps_interval_text(r["steps_lo"], r["steps"])
        unit = "step" if steps == "1" else "steps"
        res = "" if "–" not in steps else ", the crossing lying between two evaluations"
        iv = _iv(r)
        ivt = (f"{iv.ends(',.0f')}, {iv.label()}" if iv.ok and iv.level < 1 else iv.label() if iv.ok
               else f"{iv.why or 'one seed'}: no interval")
        reach = "" if np.isfinite(r["steps_max"]) else f"; {int(r['n_reached'])} of {int(r['n'])} seeds reached it"
        s = (f"At {where} the best learning rate was {r['learning_rate']:.3g}: {steps} {unit} to loss {target:g} "
             f"(median{res}; {ivt}{reach}).")
        if not r["tuned"]:
            s += f" Not tuned: optimum at the grid's edge (the {r['edge']} η tried); add {r['add']}."
        out.append(s + grid_bound(r, cell, target))
    return out


def findings_scaling_intervals(best: pd.DataFrame, per_group: pd.DataFrame, target: float, full: int | None,
                               resolution: int = 1) -> list[str]:
    """Scaling from the smallest to the largest *tuned* batch size, with intervals over seeds.

    ``per_group``: ``uncertainty.scaling_intervals``' (the best cells with their intervals).
    "Fewer" only when the two steps intervals are apart; "within 2× of perfect scaling" only
    when the efficiency's interval is on one side of 0.5; each with the coverage it reaches.
    No verdict from one seed. ``resolution``: unused (each interval is at its runs' own resolution).
    """
    from .uncertainty import Interval, apart, classify

    ok = per_group[per_group["reached"].astype(bool) & per_group["tuned"].astype(bool)].sort_values("batch_size")
    if len(ok) < 2:
        n_t = int((best["reached"] & best["tuned"].astype(bool)).sum())
        return [f"Scaling with batch size for loss {target:g} is not resolved: {n_t} tuned batch size"
                f"{'' if n_t == 1 else 's'} reached it (an optimum at the grid's edge is not tuned)."] \
            if len(best) >= 2 else []
    a, b = ok.iloc[0].to_dict(), ok.iloc[-1].to_dict()
    ia, ib = _iv(a), _iv(b)
    ideal = b["batch_size"] / a["batch_size"]
    s = (f"From {bs_text(int(a['batch_size']), full)} to {bs_text(int(b['batch_size']), full)} ({ideal:,.0f}× larger), "
         f"the median steps to loss {target:g} went from {fmt_steps(a['steps'])} to {fmt_steps(b['steps'])}")
    if not (ia.ok and ib.ok):
        s += f": no interval ({ia.why or ib.why or 'one seed'}), so no verdict."
    elif apart(ib, ia) == -1:
        s += (f": fewer at the larger batch beyond the seed spread ({_ivs_text([('smaller', ia), ('larger', ib)])}; "
              f"perfect scaling: {ideal:,.0f}× fewer).")
    else:
        s += (f": the difference is not resolved by these seeds and this evaluation interval (the intervals overlap: "
              f"{_ivs_text([('smaller', ia), ('larger', ib)])}).")
    verdicts = []
    for r in ok.iloc[1:].itertuples():
        iv = Interval(r.efficiency, r.efficiency_lo, r.efficiency_hi, 0.0, r.efficiency_level)
        if iv.ok:
            verdicts.append((int(r.batch_size), classify(iv, 0.5, "within", "beyond"), iv))
    within = [bs for bs, v, _ in verdicts if v == "within"]
    beyond = [bs for bs, v, _ in verdicts if v == "beyond"]
    open_ = [(bs, iv) for bs, v, iv in verdicts if v not in ("within", "beyond")]
    cov = min((iv.level for _, _, iv in verdicts), default=np.nan)
    parts = []
    if within:
        parts.append(f"within 2× of perfect scaling (efficiency's interval ≥ 0.5) up to batch size {max(within)}")
    if beyond:
        parts.append(f"beyond 2× from batch size {min(beyond)}")
    if open_:
        ivs = "; ".join(f"{bs_label(bs, full)}: {iv.lo:.2f}–{iv.hi:.2f}" for bs, iv in open_)
        parts.append(f"not resolved by these seeds at batch size {', '.join(bs_label(bs, full) for bs, _ in open_)} "
                     f"(efficiency intervals straddle 0.5: {ivs})")
    if parts:
        s += (f" Relative to the smallest tuned batch size (efficiency intervals from both cells' intervals, "
              f"coverage at least {math.floor(cov * 100 + 1e-9):.0f}%): " + "; ".join(parts) + ".")
    return [s]
