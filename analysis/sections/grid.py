"""Sections over the learning-rate grid: where runs diverged, and how much the final loss
depends on the learning rate."""

from __future__ import annotations

from ..figures import scaling as FG
from ..groups import combined
from ..prose import findings_divergence, findings_sensitivity, headline_divergence
from ..tables import divergence_table, with_facets
from .context import Context, cell_words


def divergence(ctx: Context):
    """Which cells diverged: per group in words, every cell in a table, the count in the headlines."""
    ctx.rep.h2("Divergence")
    found: list[str] = []
    ctx.rep.ul(found)
    if not ctx.seed_graph:  # its findings above already say which η diverged
        for g in ctx.gd_groups:
            found += [g.prefix(s) for s in findings_divergence(g.frac, g.full)]
    ctx.headlines.extend(headline_divergence(ctx.runs, ctx.facets))
    frac = combined(ctx.gd_groups, lambda g: g.frac, ctx.facets)
    ctx.rep.table(f"Cells with diverged runs ({cell_words(ctx.facets)} × learning rate)",
                  with_facets(frac, ctx.facets, lambda f: divergence_table(f, ctx.full), empty="No run diverged."))


def sensitivity(ctx: Context):
    """The final loss against the learning rate, relative to the best at each batch size (DeepOBS)."""
    ctx.rep.h2("Learning-rate sensitivity")
    found: list[str] = []
    ctx.rep.ul(found)
    if not ctx.seed_graph:
        for g in ctx.gd_groups:
            found += [g.prefix(s) for s in findings_sensitivity(g.sens, g.full)]
    sens = combined(ctx.gd_groups, lambda g: g.sens, ctx.facets)
    one = ctx.gd_groups[0].pred if len(ctx.gd_groups) == 1 else None
    ctx.rep.figure("sensitivity", "How much does the final loss depend on the learning rate?",
                   lambda: FG.sensitivity(sens, ctx.full, one.lr_mark if one else None,
                                          one.bracket(ctx.full) if one else None))
