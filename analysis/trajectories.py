"""The parameter trajectories tiny models log, and the runs the seed's pictures show.

Tiny models log each parameter's value after every update as a ``param/<name>`` metric
history (up to ``train.TRACK_PARAMS_MAX`` parameters, on the run side). From them: the
paths (``paths``), the learning rates the ball-on-the-curve figure shows, chosen from the
sweep's own results (``pick_runs``), and "when the gradient is small enough, we call it the
minimum" as a table (``grad_tol_table``, docs/seed.md §3).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .prose import fmt_steps

SLOW, FAST, WILD = "too small", "well chosen", "too large"


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

