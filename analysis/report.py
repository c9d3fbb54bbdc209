"""Convergence reports from MLflow: ``bpresearch report`` and ``make report``.

For each experiment it loads the runs and curves (``load``), builds the report
(``build``: measures, figures, tables, findings in ``prose``) and writes it
(``render``); the report files are also attached to the experiment's latest sweep run
(artifact folder ``report/``), through ``bpresearch.tracking``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bpresearch import results as R
from bpresearch import tracking

from . import load
from .build import build
from .seedfigs import param_keys
from .render import Figure, slug, write, write_index

EXIT_USAGE = 2


def _attach(uri: str, data: load.ExperimentData, folder: Path):
    """Attach the report to the latest sweep run (``report/``) so the MLflow UI shows it."""
    sweep = data.latest_sweep
    if sweep is None:
        return "no sweep run to attach the report to"
    try:
        tracking.attach_folder(uri, sweep["run_id"], folder, "report")
    except Exception as e:  # noqa: BLE001 - the files on disk are the report; the copy is a convenience
        return f"could not attach the report to sweep run {sweep['run_id']}: {type(e).__name__}: {e}"
    return None


def _fail(message: str) -> int:
    print(f"bpresearch: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(args) -> int:
    """``bpresearch report``: write the reports of ``args.experiments`` (default: all).

    Args:
        args: ``.experiments`` (names; empty = every experiment with finished runs),
            ``.tracking_uri`` (None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``),
            ``.out`` (output folder).

    Returns:
        0 on success; 2 when the store or an experiment does not exist (one line on stderr).
    """
    from bpresearch.tracking import resolve_uri

    t0 = time.perf_counter()
    uri = resolve_uri(args.tracking_uri)
    try:
        with_runs = load.experiment_names(uri)
        known = load.experiment_names(uri, finished_only=False)
    except load.StoreError as e:
        return _fail(f"report: {e}")
    names = list(dict.fromkeys(args.experiments)) or with_runs
    unknown = [n for n in names if n not in known]
    if unknown:
        return _fail(f"report: no experiment {', '.join(map(repr, unknown))} in {uri}; known: "
                     f"{', '.join(known) or 'none'}")
    if not names:
        return _fail(f"report: no experiment with finished runs in {uri} (run `make sweep` first)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in names:
        t1 = time.perf_counter()
        data = load.load_experiment(uri, name)
        keys = R.CURVE_KEYS + R.DIAGNOSTIC_KEYS + param_keys(data.runs)
        curves = load.load_curves(uri, data.runs["run_id"], keys) if not data.runs.empty else load.load_curves(uri, [])
        t_load = time.perf_counter() - t1
        rep = build(data, curves)
        folder = out / slug(name)
        write(rep, folder)
        problem = _attach(uri, data, folder)
        shown = sum(f.png is not None for f in rep.figures)
        print(f"report: {name}: {len(data.runs)} runs, {len(curves):,} curve points loaded in {t_load:.1f}s; "
              f"{shown} figures; {time.perf_counter() - t1:.1f}s → {folder / 'index.html'}", file=sys.stderr)
        if problem:
            print(f"  warning: {problem}", file=sys.stderr)
        first = next((b[1][0] for b in rep.blocks if not isinstance(b, Figure) and b[0] == "ul" and b[1]), "")
        entries.append((name, f"{len(data.runs)} finished runs", first))
    write_index(out, entries, uri)
    print(f"Reports: {(out / 'index.html').resolve()} ({len(names)} experiments, "
          f"{time.perf_counter() - t0:.1f}s)")
    return 0
