"""The MLflow UI's saved view of an experiment: the answer on the first screen.

MLflow 3.17's UI restores a view from the link parameter ``viewStateShareKey=<key>``,
reading the experiment tag ``mlflow.sharedViewState.<key>``: what its *Views → Save as
new view* writes, and what the *Views* menu lists by name. The tag holds an envelope
``{name, createdAt, updatedAt, state}``; ``state`` is the view as JSON text (the UI
writes it deflated, ``deflate;<base64>``, and reads plain JSON too). A view holds:

- the search facets: filter, sort (``orderByKey``/``orderByAsc``), time and state filters;
- the run table: ``selectedColumns`` (``params.`name```, ``metrics.`name```,
  ``attributes.`Dataset```), their order and widths;
- the charts: ``compareRunCharts`` (one config per chart: kind, metric, ``scaleType``
  ``"log"``, smoothing, x-axis, range) in ``compareRunSections`` (``display`` false:
  collapsed), ``runsHiddenMode`` (which runs the charts plot), ``hideEmptyCharts``;
- run grouping: ``groupBy`` (``param`` keys; aggregate ``min``, ``max`` or ``average``:
  MLflow 3.17 offers no median), drawn in charts as the aggregate line with a min–max band.

The UI applies a view only when the link has no search facets of its own (``orderByKey``
and the like); which runs are hidden is not part of a view (MLflow drops it).

``ui_state`` builds the view bpresearch writes for each experiment (``VIEW_KEY``), from the
facets the grid sweeps; ``view_tags`` is the experiment tag. The sweep writes it when it
opens the experiment, ``bpresearch sync`` for stores written before.

Paging: the UI fetches runs ``PAGE`` (100) at a time, a constant of its code, and groups and
charts only the runs fetched. An experiment with more child runs than that and several seeds
gets a view of its first seed: one run per cell (learning rate × batch size × facets), so
the first page holds every cell and every batch size's curves; the other seeds are one edit
of the filter away (docs/reports.md).

Run pages: MLflow 3.17 and 3.18 decide a page's mode (*Model training* or GenAI) from the
link's ``workflowType`` parameter, else from the browser's last choice (local storage
``mlflow.workflowType_v1``), never from a tag of the store; the run table's links into runs
carry no parameter. So every link bpresearch writes carries ``workflowType=machine_learning``
(``experiment_url``, ``run_url``, ``compare_url``), and a browser that has never chosen opens
a run clicked in the table in GenAI mode until *Model training* is chosen once.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from bpresearch.keys import (
    BATCH_SIZE,
    CURVE_KEYS,
    DIAGNOSTIC_KEYS,
    DIVERGED,
    FINAL_LOSS,
    FIRST_TARGET_KEYS,
    FULL_TRAIN_LOSS,
    GRAD_NORM,
    KIND_TAG,
    LEARNING_RATE,
    LOSS,
    MIN_LOSS,
    OPTIMIZER,
    RUN,
    SEED,
    STEPS,
    SWEPT_INTO,
    TEST_LOSS,
    TRAIN_LOSS,
    stored_key,
    stored_summary,
)

VIEW_PREFIX = "mlflow.sharedViewState."   # MLflow's experiment tag of a saved (shared) view
VIEW_KEY = "bpresearch"                   # the link's viewStateShareKey; the tag is VIEW_PREFIX + VIEW_KEY
VIEW_TAG = VIEW_PREFIX + VIEW_KEY
VIEW_NAME = "bpresearch: fastest first"   # its name in the UI's Views menu
STEPS_TO_TARGET = stored_summary(FIRST_TARGET_KEYS["steps"])   # the first target's steps: the sort
DIVERGED_METRIC = stored_summary(DIVERGED)

# A param logged under two names shows once, under its short name (the column people read).
# The long names stay in the store: filters and old stores use them, and config hashes never did.
SHORT_PARAM = {SWEPT_INTO["learning_rate"]: LEARNING_RATE, SWEPT_INTO["batch_size"]: BATCH_SIZE,
               SWEPT_INTO["seeds"]: SEED, "optimizer.kind": OPTIMIZER, "loss.kind": LOSS, "train.steps": STEPS}
# Set by another swept key, never a facet of its own: "full" among batch sizes sets it.
IMPLIED = {"train.full_batch"}
LOSS_CURVES = (FULL_TRAIN_LOSS, TEST_LOSS, TRAIN_LOSS)     # first, log-scaled
SUMMARY_CHARTS = (FIRST_TARGET_KEYS["steps"], FINAL_LOSS, MIN_LOSS, DIVERGED)
BAR_RUNS = 20   # runs a summary bar chart shows (MLflow's default is 10)
PAGE = 100      # runs the UI fetches at a time (its SEARCH_MAX_RESULTS; no view setting changes it)
MODE = "workflowType=machine_learning"   # the link parameter that opens a page in Model training mode


def facet_columns(facets) -> list[str]:
    """The param columns of swept facets other than learning rate, batch size and seed, each
    under one name (``SHORT_PARAM``), in the order given."""
    core = {LEARNING_RATE, BATCH_SIZE, SEED}
    out = []
    for key in facets:
        name = SHORT_PARAM.get(key, key)
        if name not in core and key not in IMPLIED and name not in out:
            out.append(name)
    return out


def columns(facets=()) -> list[str]:
    """The run table's columns: learning rate, batch size, seed, each swept facet, steps to
    the first target, diverged (MLflow's canonical column keys)."""
    params = [LEARNING_RATE, BATCH_SIZE, SEED, *facet_columns(facets)]
    return [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in (STEPS_TO_TARGET, DIVERGED_METRIC)]


def column_widths(facets=()) -> dict[str, int]:
    """Pixel widths: each header readable, and the columns fit beside MLflow's assistant panel
    at 1600 pixels (MLflow's default of 150 a column would push the last ones out of sight)."""
    return {c: max(56, round(6.5 * len(c.split("`")[1])) + 16) for c in columns(facets)}


def _section(uuid: str, name: str, expanded: bool) -> dict:
    return {"uuid": uuid, "name": name, "display": expanded, "isReordered": True, "deleted": False,
            "isGenerated": False}


def _line(metric: str, section: str, log: bool) -> dict:
    return {"uuid": f"bp-{metric}", "type": "LINE", "metricSectionId": section, "deleted": False,
            "isGenerated": False, "displayName": metric.split("/")[-1], "metricKey": metric,
            "selectedMetricKeys": [metric], "runsCountToCompare": BAR_RUNS,
            "lineSmoothness": 0, "scaleType": "log" if log else "linear", "xAxisScaleType": "linear",
            "xAxisKey": "step", "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [],
            "range": {}, "ignoreOutliers": False, "useGlobalXaxisKey": False, "useGlobalLineSmoothing": False}


def _bar(metric: str, section: str) -> dict:
    return {"uuid": f"bp-{metric}", "type": "BAR", "metricSectionId": section, "deleted": False,
            "isGenerated": False, "displayName": metric.split("/")[-1], "metricKey": metric,
            "runsCountToCompare": BAR_RUNS}


def charts() -> tuple[list[dict], list[dict]]:
    """(charts, sections): the loss curves first and log-scaled, the diagnostics next (gradient
    norm log-scaled), the summaries last and collapsed."""
    sections = [_section("bp-curves", "curves", True), _section("bp-diagnostics", "diagnostics", True),
                _section("bp-summary", "summary", False)]
    out = [_line(stored_key(k), "bp-curves", True) for k in LOSS_CURVES]
    out += [_line(stored_key(k), "bp-diagnostics", k == GRAD_NORM) for k in (GRAD_NORM, *DIAGNOSTIC_KEYS)]
    out += [_bar(stored_summary(k), "bp-summary") for k in SUMMARY_CHARTS]
    assert set(LOSS_CURVES) | {GRAD_NORM} == set(CURVE_KEYS)
    return out, sections


def search_filter(runs: int = 0, first_seed=None) -> str:
    """Child runs only; of the first seed alone when the runs are more than the UI's first page
    (``PAGE``) and seeds vary (``first_seed`` not None): one run per cell, every cell on page one."""
    only = f"tags.`{KIND_TAG}` = '{RUN}'"
    if runs > PAGE and first_seed is not None:
        only += f" AND params.`{SEED}` = '{first_seed}'"
    return only


def ui_state(facets=(), runs: int = 0, first_seed=None) -> dict:
    """The view: child runs only, fastest to the first target first (runs that never reached
    it have no value and come last), the answer's columns, the curves grouped by batch size.

    Args:
        facets: the dotted config keys the grid sweeps.
        runs: how many child runs the experiment has (or will have); over ``PAGE`` with
            ``first_seed`` given, the view shows that seed only (``search_filter``).
        first_seed: the smallest seed, where seeds are swept (None: one seed).
    """
    chart_list, sections = charts()
    return {
        "searchFilter": search_filter(runs, first_seed),
        "orderByKey": f"metrics.`{STEPS_TO_TARGET}`", "orderByAsc": True,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": columns(facets), "columnOrder": columns(facets),
        "columnWidths": column_widths(facets),
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": chart_list, "compareRunSections": sections,
        "viewMaximized": False, "runListHidden": False, "isAccordionReordered": True,
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "param", "groupByData": BATCH_SIZE}]},
        "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def varying_params(params: list[dict[str, str]]) -> list[str]:
    """The ``section.key`` params with more than one value among the runs: the facets of a
    store's experiment, for a view written after the sweep (``bpresearch sync``). A setting
    that applies to some runs only (random search's scale) is not a facet by being absent."""
    keys = sorted({k for p in params for k in p if "." in k})
    return [k for k in keys if len({p[k] for p in params if k in p}) > 1]


def first_seed(params: list[dict[str, str]]):
    """The smallest ``seed`` param among the runs when it varies, else None."""
    seeds = {int(p[SEED]) for p in params if p.get(SEED, "").lstrip("-").isdigit()}
    return min(seeds) if len(seeds) > 1 else None


def view_tags(facets=(), now_ms: int = 0, runs: int = 0, first_seed=None) -> dict[str, str]:
    """The experiment tag of bpresearch's view, as the UI's *Save as new view* writes it
    (``runs``, ``first_seed``: see ``ui_state``)."""
    envelope = {"name": VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms,
                "state": json.dumps(ui_state(facets, runs, first_seed), separators=(",", ":"))}
    return {VIEW_TAG: json.dumps(envelope, separators=(",", ":"))}


# ---------------------------------------------------------------- links into the UI
def _ui(base: str, route: str, query: str = "") -> str:
    return f"{base.rstrip('/')}/#{route}?{MODE}{'&' + query if query else ''}"


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's run table through bpresearch's view, in Model training mode."""
    return _ui(base, f"/experiments/{experiment_id}/runs", f"viewStateShareKey={VIEW_KEY}")


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in Model training mode (its metrics, params, dataset and source)."""
    return _ui(base, f"/experiments/{experiment_id}/runs/{run_id}")


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page of several runs (the seeds of one cell), in Model training mode."""
    # ``runs`` must come first: the page reads it as the key "?runs" of the parsed query string
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")), safe="")
    exps = quote(json.dumps([experiment_id], separators=(",", ":")), safe="")
    return f"{base.rstrip('/')}/#/compare-runs?runs={runs}&experiments={exps}&{MODE}"


def cell_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """Where a cell's runs are: one run's page, or the compare page of its seeds."""
    return run_url(base, experiment_id, run_ids[0]) if len(run_ids) == 1 else compare_url(base, experiment_id, run_ids)
