"""Groups of a report: one per combination of facet values (every swept key other than the
learning rate, the batch size and the seed), each with its own measures; never pooled."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import curvestore, load
from . import measures as M
from . import uncertainty as U
from .predictions import Predicted, predict


# ---------------------------------------------------------------- one group: a combination of facet values
@dataclass
class Group:
    """The runs of one combination of facet values, and every measure computed on them alone."""
    values: dict                 # facet -> value ({} when the variant sweeps no other key)
    runs: pd.DataFrame
    source: curvestore.Frame | curvestore.Spill   # where its curves are read from, when asked (``curves``)
    label: str = ""              # "optimizer.kind=adam, model.activation=relu" ("" without facets)
    key: str = ""                # suffix for figure names ("" without facets)
    targets: list = field(default_factory=list)
    steps: M.StepsToTargets | None = None
    cell: pd.DataFrame | None = None
    frac: pd.DataFrame | None = None
    sens: pd.DataFrame | None = None
    bests: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)   # (target, n_boot) -> lr_rule.rule: one bootstrap for summary and page
    pred: Predicted | None = None
    distinct: pd.DataFrame | None = None        # distinct trajectories per cell (uncertainty.distinct_counts)
    distinct_table: pd.DataFrame | None = None  # the steps table, identical trajectories counted once
    resolution: int = 1                    # the coarsest steps-to-target interval (measures.resolution_of)
    # bests: target -> measures.best_learning_rate with the best cell's interval (uncertainty.with_intervals)
    intervals: dict = field(default_factory=dict)  # target -> uncertainty.scaling_intervals
    full: int | None = None
    budget: int = 0
    eval_every: int = 1

    @property
    def curves(self) -> pd.DataFrame:
        """Its runs' curves (``load.load_curves``' columns), read from ``source`` on each use: a report
        holds one group's points at a time, so keep them no longer than a section needs them."""
        return self.source.frame(self.runs["run_id"])

    @property
    def gd(self) -> bool:
        """Whether the group trains by gradient (random search has no learning rate to tune)."""
        return (self.runs["optimizer"] != "random_search").any()

    def prefix(self, text: str) -> str:
        """A finding about this group, naming it when the variant has facets."""
        return f"{self.label}: {text}" if self.label else text


def value_text(v) -> str:
    """A facet value as text: numbers as ``%g``, anything else as ``str``."""
    return f"{v:g}" if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else str(v)


def short_facet(key: str) -> str:
    """How a facet is named in text: ``optimizer.kind`` -> ``optimizer``, ``model.activation`` -> ``activation``."""
    section, _, name = key.partition(".")
    return section if name == "kind" else name or section


def facet_label(values: dict) -> str:
    """``optimizer=adam, activation=relu``: a group as findings, tables' titles and figures name it."""
    return ", ".join(f"{short_facet(f)}={value_text(v)}" for f, v in values.items())


def full_batch_size(runs: pd.DataFrame) -> int | None:
    """The batch size that means "the whole training set", if any run used it."""
    if "full_batch" in runs and runs["full_batch"].any():
        return int(runs.loc[runs["full_batch"], "batch_size"].iloc[0])
    return None


def parts(runs: pd.DataFrame, facets: list[str]) -> list[tuple[dict, pd.DataFrame]]:
    """(facet values, runs) of each group, in the order of ``split_groups``."""
    if not facets:
        return [({}, runs)]
    return [(dict(zip(facets, k if isinstance(k, tuple) else (k,))), g.reset_index(drop=True))
            for k, g in runs.groupby(facets, sort=True)]


def split_groups(runs: pd.DataFrame, curves, facets: list[str], targets=None) -> list[Group]:
    """One ``Group`` per combination of facet values, measures computed within it.

    ``curves``: the runs' curves, a frame (``load.load_curves``) or a ``curvestore.Spill``;
    each group reads its own when asked. ``targets``: the loss targets to measure (default:
    those the runs were swept with, ``measures.targets_of``); any other is answered from the
    logged curves (``analysis.crossings``).
    """
    src = curvestore.source(curves)
    groups = []
    for values, g in parts(runs, facets):
        label = facet_label(values)
        key = "_".join(value_text(v) for v in values.values())
        groups.append(_measure(Group(values, g, src, label, load.slug_text(key) if key else ""), targets))
    return groups


def _measure(g: Group, targets=None) -> Group:
    runs, curves = g.runs, g.curves
    g.targets = [float(t) for t in targets] if targets is not None else M.targets_of(runs)
    g.full = full_batch_size(runs)
    g.budget = int(runs["steps"].max())
    g.eval_every = int(runs["params.train.eval_every"].iloc[0]) if "params.train.eval_every" in runs else 1
    g.steps = M.steps_to_targets(runs, curves, g.targets)
    table = g.steps.table
    fp = U.fingerprints(runs, curves)
    g.distinct = U.distinct_counts(runs, fp, M.TUNED_OVER)
    g.resolution = M.resolution_of(table)
    g.distinct_table = U.keep_distinct(table, fp)
    g.cell = M.cells(table)
    g.frac = M.diverged_fraction(runs)
    g.sens = M.lr_sensitivity(runs)
    gd_cell = g.cell[g.cell["optimizer"] != "random_search"]
    dt = g.distinct_table
    g.bests = {t: U.with_intervals(M.best_learning_rate(gd_cell, t), dt[dt["target"] == t], g.distinct)
               for t in g.targets}
    g.pred = predict(runs, curves, table, g.bests, g.full)
    if runs[runs["optimizer"] != "random_search"]["batch_size"].nunique() >= 2:
        for t in g.targets:
            c = dt[(dt["target"] == t) & (dt["optimizer"] != "random_search")]
            if not c.empty:
                g.intervals[t] = U.scaling_intervals(c, g.bests[t], M.TUNED_OVER, counts=g.distinct)
    return g


def combined(groups: list[Group], frame_of, facets: list[str]) -> pd.DataFrame:
    """The frames of every group, one after the other, with the facet values as leading columns."""
    parts = []
    for g in groups:
        f = frame_of(g)
        if f is None or f.empty:
            continue
        f = f.copy()
        for k, v in g.values.items():
            f[k] = v
        f["group"] = g.label
        parts.append(f)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)
