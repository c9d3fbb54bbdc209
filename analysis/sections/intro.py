"""The top of a report: the answer (the recommendation table and a few sentences), what was run
(variant, provenance, the configuration as the runs logged it), and notes on the data.

The answer comes first and stays open; everything after it is folded (``render.Report.fold_from``)."""

from __future__ import annotations

import html
import io
import json
import time

import pandas as pd

from bpresearch import keys as R

from .. import recommend
from ..groups import value_text
from ..prose import findings_steps_source
from ..summary import jsonable
from .context import Context


def answer(ctx: Context):
    """The first screen: the recommendation table, at most five sentences, the glossary; the headline figure below.

    The rows and sentences go into ``summary.json`` (``recommendations``, ``answer``) first and
    the page is drawn from there (``show_answer``), so both say the same. The longer
    headlines that later sections write (``ctx.headlines``) go to ``summary.json`` only.
    """
    recs = recommend.recommendations(ctx.groups, ctx.targets, ctx.variant.resolved)
    gd = ctx.gd_runs if "optimizer" in ctx.runs else ctx.runs
    div = gd[gd["diverged"].astype(bool)] if "diverged" in gd else gd.iloc[:0]
    ctx.rep.summary["recommendations"] = jsonable(recs)
    ctx.rep.summary["answer"] = recommend.answer(recs, len(gd), len(div),
                                                 float(div["learning_rate"].min()) if len(div) else None)
    lead = ctx.data.description.split(". ")[0].rstrip(".") + ". " if ctx.data.description else ""
    seeds = int(ctx.runs["seed"].nunique()) if not ctx.runs.empty else 0
    ctx.rep.blocks.append(("html", f"<p class='lead'>{html.escape(lead)}{len(ctx.runs):,} finished runs, "
                                   f"{seeds} seed(s) per cell.</p>"))
    if ctx.others:   # every page links the others, so that no run goes unlisted
        ctx.rep.blocks.append(("html", "<p class='lead'>Other variants of this experiment: " + "; ".join(
            (f"<a href='{html.escape(link)}'>{html.escape(v.label)}</a>" if link else html.escape(v.label))
            + f" ({len(v.runs)} runs)" for v, link in ctx.others) + ".</p>"))
    show_answer(ctx.rep, ctx.rep.summary, ctx.facets)
    ctx.summary_at = len(ctx.rep.blocks)
    ctx.rep.fold_from = len(ctx.rep.blocks)


def show_answer(rep, summary: dict, facets: list[str]):
    """The recommendation table, its sentences and the glossary, from a variant's ``summary.json`` entry."""
    recs = summary.get("recommendations") or []
    if not recs:
        return
    rep.h2("Best learning rate per target and batch size")
    rep.table("", recommend.table(recs, facets), "recommendations")
    rep.ul(summary.get("answer") or [])
    rep.terms(recommend.GLOSSARY)


def what_was_run(ctx: Context):
    """This page's runs among the experiment's, the other variants, provenance and the configuration."""
    data, variant, rep = ctx.data, ctx.variant, ctx.rep
    rep.h2("What was run")
    if data.description:
        rep.p(data.description)
    items = [f"This page: {variant.label} — {len(variant.runs)} finished runs "
             f"(of {len(data.runs)} in the experiment), from {len(variant.sweeps)} sweep(s)."]
    if variant.facets:
        items.append("Swept besides learning rate, batch size and seed (each value analysed on its own, never "
                     "pooled): " + "; ".join(f"{f} = {', '.join(value_text(v) for v in sorted(set(variant.runs[f])))}"
                                             for f in variant.facets) + ".")
    seeds = variant.runs.groupby([*variant.facets, "batch_size", "learning_rate"])["seed"].nunique() \
        if not variant.runs.empty else pd.Series(dtype=int)
    if not seeds.empty:
        lo, hi = int(seeds.min()), int(seeds.max())
        items.append(f"Seeds per cell (facet values × batch size × learning rate): {lo}" +
                     (f"–{hi}" if hi != lo else ""))
    if ctx.others:
        listed = "; ".join(f"{v.label} ({len(v.runs)} runs" + (f", page {link}" if link else "") + ")"
                           for v, link in ctx.others)
        items.append(f"Other variants of this experiment (sweeps with other fixed settings, reported separately, "
                     f"never mixed with these runs): {listed}.")
    items.append(f"MLflow store: {data.uri} (experiment id {data.experiment_id})")
    items += _provenance(variant.latest_sweep)
    if data.unfinished:
        items.append("Ignored (not FINISHED): " + ", ".join(f"{n} {s}" for s, n in sorted(data.unfinished.items())))
    items.append(f"Report written {time.strftime('%Y-%m-%d %H:%M:%S')}")
    rep.ul(items)
    text = config_text(variant)
    if text:
        rep.p("Resolved configuration (every default filled in):")
        rep.pre(text)


def _provenance(sweep: pd.Series | None) -> list[str]:
    """The latest sweep: its run, grid, overrides, git commit and versions."""
    if sweep is None:
        return ["No sweep run was found: the provenance of these runs is unknown."]

    def tag(k):
        v = sweep.get(f"tags.{k}")
        return v if isinstance(v, str) else "unknown"

    return [f"Latest sweep: {sweep['run_name']} ({sweep['status']}), run id {sweep['run_id']}; "
            f"grid size {sweep.get('params.grid_size', '?')}, overrides: {sweep.get('params.overrides', '?')}",
            f"git commit {tag('git.commit')} (dirty: {tag('git.dirty')})",
            "versions: " + ", ".join(f"{k} {tag('version.' + k)}" for k in
                                     ("python", "jax", "jaxlib", "optax", "mlflow", "numpy"))
            + f"; backend {tag('jax.backend')} ({tag('jax.device')}), {tag('host.machine')}"]


# ---------------------------------------------------------------- the configuration as the runs logged it
def config_text(variant) -> str:
    """The variant's latest resolved config with the values its runs logged; else one rebuilt from a run's params.

    The resolved file is written from the experiment's base config, so a setting that depends
    on a swept key can read there as it was before the sweep set it (``optimizer.momentum =
    0.0`` in the file, while every run with ``optimizer.kind = momentum`` logged 0.9): such a
    line shows what the runs logged instead, and says so.
    """
    if variant.resolved_toml:
        return as_logged(variant.resolved_toml, variant.resolved or {}, variant.runs)
    if variant.runs.empty:
        return ""
    row = variant.runs.iloc[0]
    buf = io.StringIO()
    buf.write("# rebuilt from the params of one run (no resolved.toml artifact found)\n")
    for col in sorted(c for c in variant.runs.columns if c.startswith("params.") and c.count(".") == 2):
        buf.write(f"{col[len('params.'):]} = {row[col]}\n")
    return buf.getvalue()


def as_logged(text: str, resolved: dict, runs: pd.DataFrame) -> str:
    """``text`` (a resolved.toml) with each fixed ``key = value`` that the runs logged otherwise replaced.

    Args:
        text: the resolved file as the sweep attached it.
        resolved: the same, parsed.
        runs: the runs (``params.<section>.<key>`` columns hold what each logged).

    Returns:
        The text, line for line; a replaced line ends in a comment giving the file's value.
        Swept keys keep the file's line: the ``[sweep]`` table lists their values.
    """
    swept = R.swept_params(resolved.get("sweep", {}))
    out, section = [], None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        values = resolved.get(section) if section else None
        if key is None or not isinstance(values, dict) or key not in values or section == "sweep":
            out.append(line)
            continue
        param = R.param_key(section, key)
        logged = _logged_values(runs, param)
        if param in swept or not logged or logged == [R.param_text(values[key])]:
            out.append(line)
            continue
        was = stripped.split("=", 1)[1].strip()
        if len(logged) == 1:
            out.append(f"{key} = {_toml_text(logged[0])}  # as the runs logged it; the resolved file says {was}\n")
        else:
            out.append(f"{line.rstrip()}  # the runs logged {', '.join(logged)}\n")
    return "".join(out)


def _logged_values(runs: pd.DataFrame, param: str) -> list[str]:
    """The distinct values the runs logged for ``param`` (section.key), sorted; [] when none did."""
    col = f"params.{param}"
    if col not in runs:
        return []
    return sorted({str(v) for v in runs[col].dropna()})


def _toml_text(logged: str) -> str:
    """A logged param's text as a TOML value: numbers and lists as they are, booleans lower case, else quoted."""
    if logged in ("True", "False"):
        return logged.lower()
    try:
        json.loads(logged)
    except ValueError:
        return json.dumps(logged)
    return logged


# ---------------------------------------------------------------- notes on the data
def nothing_to_analyse(ctx: Context):
    """The one headline of a variant without finished runs."""
    data = ctx.data
    line = ("This experiment has no FINISHED runs: there is nothing to analyse"
            + (f" ({', '.join(f'{n} {s}' for s, n in data.unfinished.items())} ignored)." if data.unfinished else "."))
    ctx.headlines.append(line)
    at = ctx.rep.fold_from if ctx.rep.fold_from is not None else len(ctx.rep.blocks)
    ctx.rep.blocks.insert(at, ("p", line))
    if ctx.rep.fold_from is not None:
        ctx.rep.fold_from += 1


def data_checks(ctx: Context):
    """What the data lacks (curves, targets) or says (every run diverged), before any section uses it."""
    runs = ctx.runs
    if not ctx.curves.count(runs["run_id"]):
        ctx.notes.append("No curves (metric histories) were found for these runs: the loss-curve figures are "
                         "missing; steps to target come from the logged summaries.")
    if runs["diverged"].all():
        ctx.headlines.append(f"Every one of the {len(runs)} runs diverged: no learning rate in this grid trains "
                             f"stably.")
    for g in ctx.groups:
        ctx.notes += [g.prefix(s) for s in findings_steps_source(g.steps)]
    if not ctx.targets:
        ctx.notes.append("The runs have no loss targets (train.targets): steps to target cannot be measured.")


def notes(ctx: Context):
    """The notes gathered by ``data_checks``, under their own heading."""
    ctx.rep.h2("Notes on the data")
    ctx.rep.ul(ctx.notes)
