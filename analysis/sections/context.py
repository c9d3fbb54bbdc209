"""What every section of a report reads and adds to.

A ``Context`` holds one variant's runs split into groups (``analysis.groups``), what the
experiment contains (a seed graph, logged trajectories, random search, several batch
sizes …: the keys of the section registry in ``analysis.build``), the report being built,
and the lists that sections fill in for each other: the headlines at the top, the notes on
the data, the figure the summary shows.

``RunSide`` is what a report needs from the run side of the project, which analysis does
not import (it would load JAX): the CLI passes it in (``bpresearch.cli``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .. import load
from .. import measures as M
from ..curvestore import Frame, Spill
from ..groups import Group, full_batch_size
from ..render import Report
from ..trajectories import param_names


class RunSide(NamedTuple):
    """Computations a report asks of the run side; None where the report is built without it.

    ``seed_example(x, y, z, target, lr, steps)``: the seed's worked example f = (x+y)·z
    (docs/seed.md §4–5), a dict of nodes, loss, loss gradients, updated values and history.
    ``loss_surface(config)``: from a run's logged config, ``J(W)``, the full training loss at
    each row of W (m, n_params), parameters in the order of their ``param/<name>`` histories.
    """
    seed_example: Callable[..., dict] | None = None
    loss_surface: Callable[[dict], Callable[[np.ndarray], np.ndarray]] | None = None


@dataclass
class Context:
    """One variant's report while its sections are built."""
    rep: Report
    data: load.ExperimentData
    variant: load.Variant
    others: list                   # (other variant, relative link to its page or None)
    curves: Frame | Spill          # the runs' curves: ``curves.frame(run_ids)``, or each group's ``g.curves``
    groups: list[Group]
    run_side: RunSide = RunSide()
    headlines: list[str] = field(default_factory=list)   # shared with the summary's list block
    summary_at: int = 0            # where the headline figure goes: just below the headlines
    headline_figure: str | None = None
    notes: list[str] = field(default_factory=list)
    seed_findings: list[str] = field(default_factory=list)  # the seed graph's findings; later sections add to them

    # ------------------------------------------------------------ the runs
    @property
    def runs(self) -> pd.DataFrame:
        return self.variant.runs

    @property
    def facets(self) -> list[str]:
        return self.variant.facets

    @property
    def targets(self) -> list[float]:
        return self.groups[0].targets if self.groups else []

    @cached_property
    def gd_groups(self) -> list[Group]:
        """The groups trained by gradient (random search has no learning rate to tune)."""
        return [g for g in self.groups if g.gd]

    @cached_property
    def gd_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["optimizer"] != "random_search"]

    @property
    def n_bs(self) -> int:
        return self.gd_runs["batch_size"].nunique()

    @property
    def n_lr(self) -> int:
        return self.gd_runs["learning_rate"].nunique()

    @cached_property
    def full(self) -> int | None:
        return full_batch_size(self.runs)

    # ------------------------------------------------------------ what the experiment contains
    def _model_is(self, *kinds: str) -> bool:
        model = self.runs.get(f"params.{R.MODEL}")
        return model is not None and bool(model.isin(kinds).all())

    @cached_property
    def seed_graph(self) -> bool:
        """The seed's graph f = (x+y)·z is the model (docs/seed.md §4)."""
        return self._model_is("seed_graph")

    @cached_property
    def seed_model(self) -> bool:
        """The seed's graph or its neuron: the models whose rules the seed states (docs/seed.md §3)."""
        return self._model_is("seed_graph", "neuron")

    @cached_property
    def trajectories(self) -> bool:
        """The runs logged their parameters' histories (``param/<name>``)."""
        return bool(param_names(self.runs))

    @cached_property
    def grad_tol(self) -> bool:
        """``train.grad_tol`` was set: the runs logged when the gradient got small enough."""
        col = "params.train.grad_tol"
        return col in self.runs and not self.runs[col].isna().all() and bool(self.targets)

    @cached_property
    def random_search(self) -> bool:
        return "random_search" in set(self.runs["optimizer"])

    @property
    def batch_and_stochastic(self) -> bool:
        """Both batch size 1 and the full batch were run."""
        return self.full is not None and bool((self.runs["batch_size"] == 1).any()) and self.full != 1

    # ------------------------------------------------------------ measures shared by sections
    @cached_property
    def verdicts(self) -> dict:
        """Group key -> ``measures.verdicts`` (converged, slow, oscillates, diverged) of the first target."""
        out = {}
        for g in self.groups:
            if self.targets and not g.curves.empty:
                table = g.steps.table
                v = M.verdicts(table[table["target"] == self.targets[0]], M.oscillation(g.curves))
                out[g.key] = v.merge(g.runs[["run_id", "diverged_step"]], on="run_id")
        return out


def sfx(g: Group) -> str:
    """A figure name's suffix for a group: ``_<facet values>`` ("" without facets)."""
    return f"_{g.key}" if g.key else ""


def of(g: Group) -> str:
    """A figure title's tail naming a group: `` — optimizer=adam`` ("" without facets)."""
    return f" — {g.label}" if g.label else ""


def cell_words(facets: list[str]) -> str:
    """What a cell is, in a table's title: ``optimizer.kind × batch size``."""
    return " × ".join([*facets, "batch size"])


def group_of(groups: list[Group], frame: pd.DataFrame) -> Group:
    """The group a slice of a combined frame (``groups.combined``) came from."""
    label = frame["group"].iloc[0] if "group" in frame and not frame.empty else ""
    return next(g for g in groups if g.label == label)
