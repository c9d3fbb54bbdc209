"""One variant's report from its frames: the registry of sections, in the order they appear.

A variant (``load.Variant``) is one set of fixed settings of an experiment; its runs are
split into *groups*, one per combination of facet values (every swept key other than
learning rate, batch size and seed: ``optimizer.kind``, ``model.activation`` …). Every
measure is computed within a group, so runs are never pooled across facet values; a
*cell* is a group × batch size (× learning rate). Tables carry one column per facet,
figures one panel, colour or figure per group, and findings name the group they are
about; ``summary`` collects the same numbers for ``summary.json``.

Each section (``analysis.sections``) applies where the experiment holds what it is about
(a seed graph, logged trajectories, several batch sizes, random search …); ``build`` only
orders them. A report never trains: it reads the store. What it cannot show (no finished
runs, no curves, every run diverged) it says plainly where the figure or table would be.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from . import curvestore, load
from .groups import split_groups
from .render import Figure, Report
from .sections import curves, grid, intro, predicted, random_search, seed, steps
from .sections import scaling_rule as rule
from .sections.context import Context, RunSide, sfx
from .summary import variant_summary


class Section(NamedTuple):
    name: str
    applies: Callable[[Context], bool]   # from what the experiment contains
    build: Callable[[Context], None]


def always(ctx: Context) -> bool:
    return True


# Every report starts so; a variant without finished runs ends there.
HEAD: tuple[Section, ...] = (
    Section("answer", always, intro.answer),
    Section("what was run", always, intro.what_was_run),
)

SECTIONS: tuple[Section, ...] = (
    Section("data checks", always, intro.data_checks),
    Section("seed graph", lambda c: c.seed_graph, seed.graph),
    Section("seed rules", lambda c: c.seed_model or c.trajectories or c.grad_tol, seed.rules),
    Section("notes on the data", lambda c: bool(c.notes), intro.notes),
    Section("loss curves", lambda c: not c.seed_graph, curves.loss_curves),  # the seed graph's own figure says more
    Section("steps to target", lambda c: bool(c.targets), steps.per_target),
    Section("divergence", always, grid.divergence),
    Section("learning-rate sensitivity", lambda c: c.n_lr >= 2, grid.sensitivity),
    Section("predicted versus measured", always, predicted.predicted),
    Section("learning-rate scaling rule", lambda c: c.n_bs >= 3 and bool(c.targets), rule.scaling_rule),
    Section("grid placement", lambda c: c.variant.placement is not None, rule.placement),
    Section("batch versus stochastic", lambda c: c.batch_and_stochastic, curves.batch_vs_stochastic),
    Section("random search", lambda c: c.random_search, random_search.random_search),
)

MAX_HEADLINES = 5


def build(data: load.ExperimentData, curves, variant: load.Variant | None = None,
          others: list[tuple[load.Variant, str | None]] = (), run_side: RunSide = RunSide(),
          targets=None) -> Report:
    """Measures, figures, tables and findings of one variant of an experiment.

    Args:
        data: the experiment as ``load.load_experiment`` read it.
        curves: its runs' curves: a frame (``load.load_curves``; may hold other variants' runs too)
            or a ``curvestore.Spill``, from which each group reads its own when a section asks.
        variant: which variant (default: the first, the base sweep).
        others: the experiment's other variants and the relative link to each one's page.
        run_side: what the run side computes for the seed's pictures (``sections.context.RunSide``);
            without it those figures say they are not shown.
        targets: the loss targets to report (default: those the runs were swept with); a
            target the sweep was not given is answered from the logged curves.

    Returns:
        The ``Report`` (``rep.summary`` holds its ``summary.json`` entry); it always builds,
        saying plainly what the data cannot show.
    """
    if variant is None:
        variant = data.variants[0] if data.variants else load.Variant("base", {}, {}, [], data.runs, data.sweeps)
    title = data.name if variant.base or len(data.variants) <= 1 else f"{data.name} — {variant.label}"
    runs = variant.runs
    curves = curvestore.source(curves)
    groups = split_groups(runs, curves, variant.facets, targets) if not runs.empty else []
    ctx = Context(Report(title), data, variant, list(others), curves, groups, run_side)
    ctx.rep.summary = variant_summary(variant, groups)
    for section in HEAD + (SECTIONS if not runs.empty else ()):
        if section.applies(ctx):
            section.build(ctx)
    if runs.empty:
        intro.nothing_to_analyse(ctx)
        return ctx.rep
    if ctx.headline_figure is None and ctx.gd_groups and not ctx.seed_graph:
        ctx.headline_figure = f"loss_curves{sfx(ctx.gd_groups[0])}"
    _to_summary(ctx.rep, ctx.headline_figure, ctx.summary_at)
    del ctx.headlines[MAX_HEADLINES:]
    ctx.rep.summary["headlines"] = list(ctx.headlines)
    return ctx.rep


def _to_summary(rep: Report, name: str | None, at: int):
    """Move the figure that best answers the question up into the summary; leave a pointer behind."""
    for i, b in enumerate(rep.blocks):
        if isinstance(b, Figure) and b.name == name and b.png is not None:
            rep.blocks[i] = ("p", f"({b.title}: the figure is in the summary at the top.)")
            rep.blocks.insert(at, b)
            if rep.fold_from is not None and at <= rep.fold_from:
                rep.fold_from += 1
            return
