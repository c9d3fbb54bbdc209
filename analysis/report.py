"""Convergence reports from MLflow: ``bpresearch report`` and ``make report``.

For each experiment it loads the runs (``load``) and spills their curves to a temporary
folder, read from the store once and read back one group at a time (``curvestore``), builds the report
(``build``: the sections of ``analysis.sections``, from measures, figures, tables and the
findings in ``prose``) and writes it (``render``); the report files are also attached to the experiment's latest sweep run
(artifact folder ``report/``), through ``bpresearch.store.reads``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bpresearch import keys as R
from bpresearch.store import reads

from . import curvestore, groups, links, load, recommend, refinement
from .build import build
from .pages import write
from .render import slug, write_index
from .sections.context import RunSide
from .summary import experiment_summary
from .trajectories import param_keys

VARIANTS_DIR = "variants"  # one page per further variant: <experiment>/variants/<variant>/index.html

EXIT_USAGE = 2


def _attach(uri: str, data: load.ExperimentData, folder: Path):
    """Attach the report to the latest sweep run (``report/``) so the MLflow UI shows it."""
    sweep = data.latest_sweep
    if sweep is None:
        return "no sweep run to attach the report to"
    try:
        reads.attach_folder(uri, sweep["run_id"], folder, "report")
    except Exception as e:  # noqa: BLE001 - the files on disk are the report; the copy is a convenience
        return f"could not attach the report to sweep run {sweep['run_id']}: {type(e).__name__}: {e}"
    return None


def _fail(message: str) -> int:
    print(f"bpresearch: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def parse_targets(text: str | None) -> list[float] | None:
    """``--targets 0.3,0.05`` as loss values (None: the targets the runs were swept with).

    Raises:
        ValueError: one line saying what is wrong.
    """
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in text.split(",")):
        try:
            t = float(part)
        except ValueError:
            t = float("nan")
        if not (t > 0 and t < float("inf")):
            raise ValueError(f"report: --targets: expected positive loss values separated by commas, such as "
                             f"0.3,0.05; got {part!r}")
        out.append(t)
    return out


def unrefined(variant, targets: list[float] | None) -> str | None:
    """The line a report says when asked about targets its refining sweep did not refine, or None."""
    refine = refinement.settings(variant.resolved) if variant is not None else None
    if not targets or refine is None:
        return None
    missing = [t for t in targets if not any(abs(t - r) <= 1e-12 * max(1.0, r) for r in refine["targets"])]
    if not missing:
        return None
    return (f"loss {', '.join(f'{t:g}' for t in missing)} was not refined (the sweep refined the learning rate for "
            f"{', '.join(f'{t:g}' for t in refine['targets'])}; a refine target must be in [sweep] refine at sweep "
            f"time): its best learning rate is among those the sweep ran")


def main(args, run_side: RunSide = RunSide()) -> int:
    """``bpresearch report``: write the reports of ``args.experiments`` (default: all).

    Args:
        args: ``.experiments`` (names; empty = every experiment with finished runs),
            ``.tracking_uri`` (None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``),
            ``.out`` (output folder), ``.variant`` (optional: one variant of the one experiment
            named: "base", a variant's folder name, or its overrides as ``key=value[,key=value]``).
        run_side: what the run side computes for the seed's pictures (the worked example,
            J(w)); analysis imports no JAX, so the CLI passes it in. Without it those figures
            say that they are not shown.

    ``args.targets`` (optional): loss targets as ``0.3,0.05``, instead of those the runs were
    swept with; a target the sweep was not given is answered from the logged curves.

    Returns:
        0 on success; 2 when the store or an experiment does not exist (one line on stderr).
    """
    t0 = time.perf_counter()
    try:
        targets = parse_targets(getattr(args, "targets", None))
    except ValueError as e:
        return _fail(str(e))
    uri = reads.resolve_uri(args.tracking_uri)
    try:
        with_runs = load.experiment_names(uri)
        known = load.experiment_names(uri, finished_only=False)
    except load.StoreError as e:
        return _fail(f"report: {e}")
    names = list(dict.fromkeys(args.experiments)) or with_runs
    unknown = [n for n in names if n not in known]
    if unknown:
        return _fail(f"report: no experiment {', '.join(map(repr, unknown))} in {uri}"
                     f"{load.did_you_mean(unknown, known)}; known: {', '.join(known) or 'none'}")
    if not names:
        return _fail(f"report: no experiment with finished runs in {uri} (run `make sweep` first)")
    selector = getattr(args, "variant", None)
    if selector and len(names) != 1:
        return _fail("report: --variant picks a variant of one experiment; name exactly one experiment")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        t1 = time.perf_counter()
        data = load.load_experiment(uri, name)
        variants = data.variants
        if selector:
            v = load.select_variant(variants, selector)
            if v is None:
                known_v = "; ".join(f"{x.slug} ({x.label}, {len(x.runs)} runs)" for x in variants) or "none"
                return _fail(f"report: {name}: no variant {selector!r}; known: {known_v}")
            variants = [v]
        folder = out / slug(name)
        with tempfile.TemporaryDirectory(prefix="bpresearch-curves-") as tmp:
            curves = spill_curves(uri, data, variants, Path(tmp))
            t_load = time.perf_counter() - t1
            reps = _write_pages(data, curves, variants, folder, run_side, targets, getattr(args, "ui_url", None))
        shown = sum(f.png is not None for rep in reps for f in rep.figures)
        summary = experiment_summary(name, [r.summary for r in reps])
        summary["written"] = time.strftime("%Y-%m-%d %H:%M")
        (folder / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False), encoding="utf-8")
        problem = _attach(uri, data, folder)
        print(f"report: {name}: {len(data.runs)} runs in {len(data.variants)} variant(s), {curves.points:,} curve "
              f"points loaded in {t_load:.1f}s; {shown} figures; {time.perf_counter() - t1:.1f}s → "
              f"{folder / 'index.html'}", file=sys.stderr)
        if problem:
            print(f"  warning: {problem}", file=sys.stderr)
        if note := unrefined(variants[0] if variants else None, targets):
            print(f"  note: {note}", file=sys.stderr)
    listed = write_index(out, uri)
    print(f"Reports: {(out / 'index.html').resolve()} ({len(names)} experiment(s) written, {len(listed)} listed, "
          f"{time.perf_counter() - t0:.1f}s)")
    return 0


def spill_curves(uri: str, data: load.ExperimentData, variants: list, folder: Path) -> curvestore.Spill:
    """The curves of ``variants``, read from the store in one pass and spilled to ``folder`` one part
    per group (``groups.parts``, the groups ``build`` makes), so that a report holds one group's points
    at a time."""
    keys = R.CURVE_KEYS + R.DIAGNOSTIC_KEYS + param_keys(data.runs)
    parts = [g["run_id"].tolist() for v in variants if not v.runs.empty for _, g in groups.parts(v.runs, v.facets)]
    return curvestore.spill(uri, parts, keys, folder)


def _write_pages(data: load.ExperimentData, curves, variants: list, folder: Path, run_side: RunSide,
                 targets=None, ui_url: str | None = None) -> list:
    """One page per variant: the first in ``folder``, the others in ``folder/variants/<slug>``; their reports.
    With ``ui_url`` (the MLflow UI's address) each page links into the UI (``links``)."""
    old = folder / VARIANTS_DIR
    if old.exists():
        shutil.rmtree(old)  # pages of variants an earlier build had
    reps, places = [], []
    main_v = variants[0] if variants else None
    for v in variants or [None]:
        here = folder if v is main_v else folder / VARIANTS_DIR / v.slug
        others = [(o, _link(here, folder, o, main_v)) for o in data.variants if o is not v]
        reps.append(build(data, curves, v, others, run_side, targets))
        places.append(here)
        if ui_url:
            links.link_report(reps[-1], ui_url, data.experiment_id, v.runs if v else data.runs, v.facets if v else [])
    if len(reps) > 1:
        _side_by_side(reps[0], reps[1:], main_v.facets if main_v else [])
    for rep, here in zip(reps, places):
        write(rep, here)
    return reps


def _side_by_side(base, others: list, facets: list[str]):
    """On the first page, above the folded details: each cell of the base against every other variant."""
    table = recommend.compare_variants(base.summary.get("recommendations") or [],
                                       [(o.summary.get("label", o.name), o.summary.get("recommendations") or [])
                                        for o in others], facets)
    at = base.fold_from if base.fold_from is not None else len(base.blocks)
    blocks = [("h2", "Variants against the base sweep")]
    blocks += [("table", "What each variant's overrides changed, per cell (steps ×: variant ÷ base)", table,
                "variants")] if not table.empty else \
        [("p", "No cell was run both in the base sweep and in another variant: nothing to set side by side.")]
    base.blocks[at:at] = blocks
    if base.fold_from is not None:
        base.fold_from += len(blocks)


def _link(here: Path, folder: Path, other, main_v) -> str:
    """The relative link from the page in ``here`` to ``other``'s page."""
    target = folder if other is main_v else folder / VARIANTS_DIR / other.slug
    return os.path.relpath(target / "index.html", here).replace(os.sep, "/")
