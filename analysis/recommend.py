"""The answer at the top of a report: the recommended learning rate per target, group and batch size.

``recommendations`` turns each gradient group's verdicts (``measures.best_learning_rate``,
``bpresearch.verdicts.bracket`` through ``refinement.bracket``, the bootstrap of
``uncertainty``) into rows, one per target × group × batch size, that ``summary.json``
holds as its ``recommendations`` list. ``table`` and ``answer`` read those rows only, so the
page shows what ``summary.json`` holds: the table, at most five plain sentences, and
``GLOSSARY`` for the few terms they use. ``compare_variants`` sets a variant's rows beside
the base sweep's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpresearch import keys as R

from . import refinement
from . import uncertainty as U
from .groups import short_facet, value_text

MAX_SENTENCES = 5

GLOSSARY = (
    ("η", "the learning rate."),
    ("steps", "updates until the full training loss first fell below the target, median over seeds "
              "(a–b: it fell between two evaluations)."),
    ("interval", "an order-statistic interval of the median steps over seeds, with the coverage it reaches for "
                 "that many seeds (the range of 3 seeds covers the median 75% of the time); none from one seed."),
    ("examples", "steps × batch size: the training examples the optimizer saw."),
    ("bracket", "the learning rates tried just below and just above the best one."),
    ("tuned", "the best η lies inside the range tried; at the range's edge the optimum may lie outside."),
    ("resolved", "tuned, and both bracketing η within the sweep's refinement spacing of the best."),
)


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _group_rows(g, t: float, resolution: float) -> list[dict]:
    """The rows of one gradient group for one target, one per batch size."""
    best = g.bests.get(t)
    if best is None or best.empty:
        return []
    cell = g.cell[g.cell["optimizer"] != "random_search"]
    br = refinement.bracket(cell, best, t, resolution)
    boot = g.intervals[t].per_group if t in g.intervals else None
    rows = []
    for r in br.sort_values("batch_size").itertuples():
        bs = int(r.batch_size)
        iv = None
        if boot is not None and "batch_size" in boot:
            hit = boot[boot["batch_size"] == bs]
            if not hit.empty:
                h = hit.iloc[0]
                ok_iv = np.isfinite(h["steps_lo"]) and np.isfinite(h["steps_hi"])
                iv = {"interval": [float(h["steps_lo"]), float(h["steps_hi"])] if ok_iv else None,
                      "coverage": _num(h["steps_level"]) if ok_iv else None,
                      "what": (h.get("iv_how") or None) if ok_iv else None,
                      "why_none": None if ok_iv else (h.get("iv_why") or None)}
        ok = bool(r.reached)
        rows.append({**g.values, "group": g.label, "target": R.target_key(t),
                     "steps_from": "curve" if g.steps is not None and t in g.steps.curve_targets else "sweep",
                     "batch_size": bs,
                     "full_batch": g.full is not None and bs == g.full, "reached": ok,
                     "best_learning_rate": float(r.learning_rate) if ok else None,
                     "bracket": [_num(r.lr_below), _num(r.lr_above)] if ok else None,
                     "steps": _num(r.steps) if ok else None, "steps_interval": iv if ok else None,
                     # the first crossing lies in [last evaluation above + 1, first below]
                     "steps_crossing": [_num(r.steps_lo), _num(r.steps)] if ok else None,
                     "seeds_reached": int(r.n_reached), "seeds": int(r.n),
                     "examples": _num(r.examples) if ok else None,
                     "tuned": bool(r.tuned), "edge": r.edge if ok else "",
                     "try_learning_rates": r.add if ok and r.edge in ("smallest", "largest") else "",
                     "resolved": bool(r.resolved),
                     "resolution": resolution if math.isfinite(resolution) else None})
    return rows


def recommendations(groups, targets: list[float], resolved_config: dict | None) -> list[dict]:
    """Every target × gradient group × batch size: best η, its bracket, steps, examples, tuned, resolved.

    Args:
        groups: the variant's ``groups.Group`` list (random search has no learning rate: left out).
        targets: the loss targets, loosest first.
        resolved_config: the variant's resolved configuration: its ``[sweep] refine`` spacing
            decides "resolved"; without refinement, resolved means tuned (inside the range).
    """
    refine = refinement.settings(resolved_config)
    resolution = refine["resolution"] if refine else math.inf
    return [row for t in targets for g in groups if g.gd for row in _group_rows(g, t, resolution)]


# ---------------------------------------------------------------- the rows as a table and as sentences
def _lr(v) -> str:
    return "—" if v is None else f"{v:.3g}"


def _steps(v) -> str:
    return "—" if v is None else f"{math.ceil(v - 1e-9):,}"


def _bs(r: dict) -> str:
    return f"full ({r['batch_size']})" if r.get("full_batch") else str(r["batch_size"])


def _bs_text(r: dict) -> str:
    return f"full batch ({r['batch_size']})" if r.get("full_batch") else f"batch size {r['batch_size']}"


def _steps_cell(r: dict) -> str:
    """Median steps; "a–b" when the crossing lay between two evaluations."""
    if not r["reached"]:
        return "not reached"
    lo, hi = r.get("steps_crossing") or (r["steps"], r["steps"])
    return f"{_steps(lo)}–{_steps(hi)}" if lo is not None and _steps(lo) != _steps(hi) else _steps(hi)


def _interval_cell(iv: dict | None) -> str:
    """"218–285 (75%)"; "— (one seed)" where there is none."""
    if not iv:
        return "—"
    if iv["interval"] is None:
        return f"— ({iv['why_none']})" if iv.get("why_none") else "—"
    lo, hi = iv["interval"]
    return f"{_steps(lo)}–{_steps(hi)} ({iv['coverage']:.0%})"


def _bracket(r: dict) -> str:
    if not r["reached"]:
        return "—"
    lo, hi = r["bracket"]
    if r["edge"] in ("smallest", "largest", "only"):
        return f"edge: try {r['try_learning_rates']}" if r["try_learning_rates"] else "edge"
    return f"{_lr(lo)}–{_lr(hi)}"


# A target asked after the sweep: its steps come from the logged curve, between two evaluations.
CURVE_MARK = " (from the logged curve)"


def table(recs: list[dict], facets: list[str]) -> pd.DataFrame:
    """The recommendation rows as the page shows them; a target or group repeated from the row above is blank."""
    rows, prev = [], None
    for r in recs:
        key = (r["target"], *(r.get(f) for f in facets))
        iv = r["steps_interval"]
        label = r["target"] + (CURVE_MARK if r.get("steps_from") == "curve" else "")
        row = {"target loss": label if key[:1] != (prev or (None,))[:1] else ""}
        for f in facets:
            row[short_facet(f)] = value_text(r[f]) if key != prev else ""
        row.update({"batch size": _bs(r), "best η": _lr(r["best_learning_rate"]), "bracket": _bracket(r),
                    "steps": _steps_cell(r),
                    "interval": _interval_cell(iv),
                    "seeds reached": f"{r['seeds_reached']}/{r['seeds']}",
                    "examples": _steps(r["examples"]),
                    "tuned": "yes" if r["tuned"] else "no" if r["reached"] else "—",
                    "resolved": "yes" if r["resolved"] else "no" if r["reached"] else "—"})
        rows.append(row)
        prev = key
    return pd.DataFrame(rows)


def _where(r: dict) -> str:
    grp = f" ({r['group']})" if r.get("group") else ""
    return f"{_bs_text(r)}{grp}, η = {_lr(r['best_learning_rate'])}"


def _span(r: dict, scale: int | None) -> U.Interval:
    """Where a row's median steps (times ``scale``, the batch size when None) may lie: its interval over seeds,
    else the evaluations its crossing lies between when every seed took the same path; none from one seed."""
    k = r["batch_size"] if scale is None else scale
    iv = r.get("steps_interval") or {}
    if iv.get("interval"):
        (lo, hi), level = iv["interval"], iv["coverage"]
    elif r.get("seeds", 1) > 1 and r.get("steps_crossing"):
        (lo, hi), level = r["steps_crossing"], 1.0
    else:
        return U.NONE
    return U.Interval(r["steps"] * k, lo * k, hi * k, 0.0, level)


def _fewest(ok: list[dict], head: str, key: str, scale: int | None) -> str:
    """The row with the fewest ``key``, named only when its interval lies below every other row's
    (``uncertainty.apart``, the rule of the findings); else every row tied with it."""
    best = min(ok, key=lambda r: (r[key], r["batch_size"]))
    first = _span(best, scale)
    if not first.ok:   # one seed: no winner; settings with the very same count are all named (or counted)
        same = [r for r in ok if r[key] == best[key]]
        where = (_where(best) if len(same) == 1 else f"both {_where(same[0])} and {_where(same[1])}"
                 if len(same) == 2 else f"{len(same)} settings alike (the table lists them)")
        return (f"{head}: {_steps(best[key])} at {where}; one seed per cell gives no interval, "
                f"so no setting is named fastest.")
    tied = [r for r in ok if r is not best and U.apart(first, _span(r, scale)) != -1]
    if not tied:
        return f"{head}: {_steps(best[key])} at {_where(best)}."
    names = [f"{_where(r)} ({_steps(r[key])})" for r in [best] + sorted(tied, key=lambda r: r[key])]
    if len(names) > 2:   # a comparison of many settings is a table (the groups compared), not a sentence
        return (f"{head}: {len(names)} settings tie within the seeds' intervals, the fewest {names[0]}; "
                f"the table compares them.")
    return f"{head}: a tie within the seeds' intervals between {'; '.join(names)}."


def _n_steps(v) -> str:
    return f"{_steps(v)} step" + ("" if v == 1 else "s")


def _unreached(recs: list[dict]) -> str:
    """The later targets that no row reached: the table says so row by row, the answer once."""
    first = recs[0]["target"]
    missed = [t for t in dict.fromkeys(r["target"] for r in recs)
              if t != first and not any(r["reached"] for r in recs if r["target"] == t)]
    return (f"No setting reached loss {' or '.join(missed)} within the steps tried." if missed else "")


def _scaling(rows: list[dict]) -> str:
    """How far larger batches help, for one group and target: where examples stay within 2× of the smallest batch's."""
    ok = sorted((r for r in rows if r["reached"] and r["tuned"]), key=lambda r: r["batch_size"])
    if len(ok) < 2:
        return ""
    e0, b0 = ok[0]["examples"], ok[0]
    within = [r for r in ok if r["examples"] <= 2 * e0]
    last, big = within[-1], ok[-1]
    grp = f" ({b0['group']})" if b0.get("group") else ""
    if last is b0:   # already the next batch size needs more than twice the examples
        return (f"Larger batches{grp} help less than in proportion from the start: {_bs_text(big)} needs "
                f"{_n_steps(big['steps'])} against {_steps(b0['steps'])} at {_bs_text(b0)}, "
                f"{big['examples'] / e0:.2g}× the examples.")
    s = (f"Up to {_bs_text(last)}, larger batches{grp} cut the steps nearly in proportion "
         f"({_steps(b0['steps'])} → {_steps(last['steps'])} steps, {last['examples'] / e0:.2g}× the examples)")
    if big is not last:
        s += (f"; beyond, they help less: {_bs_text(big)} needs {_n_steps(big['steps'])}, "
              f"{big['examples'] / e0:.2g}× the examples")
    return s + "."


def answer(recs: list[dict], runs: int, diverged: int, first_diverged: float | None) -> list[str]:
    """At most five plain sentences: fewest steps, fewest examples, how far larger batches help, the later targets
    nothing reached, divergence, tuning."""
    if not recs:
        return []
    t = recs[0]["target"]
    first = [r for r in recs if r["target"] == t]
    ok = [r for r in first if r["reached"]]
    out = []
    if not ok:
        out.append(f"No batch size reached loss {t} at any learning rate tried.")
    else:
        f = min(ok, key=lambda r: (r["steps"], r["batch_size"]))
        out.append(_fewest(ok, f"Fewest steps to loss {t}", "steps", 1))
        out.append(_fewest(ok, "Fewest examples", "examples", None))
        fastest_group = f.get("group", "")
        out.append(_scaling([r for r in first if r.get("group", "") == fastest_group]))
    out.append(_unreached(recs))
    if diverged and diverged == runs:
        out.append(f"Every one of the {runs} runs diverged: no learning rate in this grid trains stably.")
    elif diverged:
        out.append(f"{diverged} of {runs} runs diverged, none below η = {_lr(first_diverged)}.")
    else:
        out.append(f"No run diverged ({runs} runs).")
    untuned = [r for r in recs if r["reached"] and not r["tuned"]]
    unresolved = [r for r in recs if r["reached"] and r["tuned"] and not r["resolved"]]
    if untuned:
        out.append(f"{len(untuned)} of {len(recs)} rows are not tuned (best η at the edge of the range tried); "
                   f"their bracket column says which η to add.")
    elif unresolved:
        out.append(f"{len(unresolved)} of {len(recs)} rows are tuned but not resolved to the refinement's spacing.")
    return [s for s in out if s][:MAX_SENTENCES]


# ---------------------------------------------------------------- variants beside the base
def compare_variants(base: list[dict], others: list[tuple[str, list[dict]]], facets: list[str]) -> pd.DataFrame:
    """Per cell (target × group × batch size): the base sweep against each variant, steps and best η."""
    def key(r):
        return (r["target"], r.get("group", ""), r["batch_size"])

    index = {key(r): r for r in base}
    rows = []
    for label, recs in others:
        for r in recs:
            b = index.get(key(r))
            if b is None:
                continue
            change = "—"
            if b["reached"] and r["reached"]:
                change = (f"steps ×{r['steps'] / b['steps']:.2g}, η ×{r['best_learning_rate'] / b['best_learning_rate']:.2g}")
            elif b["reached"] != r["reached"]:
                change = "reached only in the " + ("base" if b["reached"] else "variant")
            row = {"variant": label, "target loss": r["target"]}
            row.update({short_facet(f): value_text(r[f]) for f in facets if f in r})
            row.update({"batch size": _bs(r),
                        "base: steps (η)": f"{_steps(b['steps'])} ({_lr(b['best_learning_rate'])})"
                        if b["reached"] else "not reached",
                        "variant: steps (η)": f"{_steps(r['steps'])} ({_lr(r['best_learning_rate'])})"
                        if r["reached"] else "not reached",
                        "change": change})
            rows.append(row)
    return pd.DataFrame(rows)
