"""Links from a report into the MLflow UI (``bpresearch report --ui-url``).

With the address of a running MLflow UI, the report's title links to the experiment's saved
view (the run table, fastest first) and each row of the recommendation table links its best
learning rate to that cell's runs: the run's page for one seed, MLflow's compare page of
the seeds for several. Every link opens in Model training mode (``store.views``). Without an
address the report has no links: its files stay usable away from the store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch.store.reads import cell_url, experiment_url

from .render import Link, Report

LINKED_COLUMN = "best η"   # the recommendation table's column whose cells link to their runs


def cell_runs(runs: pd.DataFrame, row: dict, facets: list[str]) -> list[str]:
    """The run ids of a recommendation row's cell: its facet values, batch size and best η, every seed."""
    if row.get("best_learning_rate") is None or runs.empty:
        return []
    hit = np.isclose(runs["learning_rate"].astype(float), row["best_learning_rate"], rtol=1e-9, atol=0) & \
        (runs["batch_size"].astype(float) == float(row["batch_size"]))
    for f in facets:
        if f in row and f in runs:
            hit &= runs[f] == row[f]
    return runs.loc[hit].sort_values("seed")["run_id"].tolist() if "seed" in runs else runs.loc[hit, "run_id"].tolist()


def link_report(rep: Report, ui_url: str, experiment_id: str, runs: pd.DataFrame, facets: list[str]) -> int:
    """Link ``rep``'s title to the experiment's view and each recommendation row's best η to its runs.

    The recommendation table's rows are ``rep.summary["recommendations"]`` in order
    (``recommend.table``). Returns the number of cells linked.
    """
    rep.title_url = experiment_url(ui_url, experiment_id)
    recs = rep.summary.get("recommendations") or []
    linked = 0
    for b in rep.blocks:
        if isinstance(b, tuple) and b[0] == "table" and len(b) > 3 and b[3] == "recommendations":
            df = b[2]
            if LINKED_COLUMN not in df or len(df) != len(recs):
                continue
            col = df[LINKED_COLUMN].astype(object)
            for i, r in enumerate(recs):
                ids = cell_runs(runs, r, facets)
                if ids:
                    col.iat[i] = Link(str(col.iat[i]), cell_url(ui_url, experiment_id, ids))
                    linked += 1
            df[LINKED_COLUMN] = col
    return linked
