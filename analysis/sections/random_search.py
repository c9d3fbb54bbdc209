"""Random search against gradient descent: the best loss so far against loss evaluations,
per combination of the facets other than the optimizer."""

from __future__ import annotations

import pandas as pd

from .. import load
from .. import measures as M
from ..figures import curves as FC
from ..groups import facet_label, value_text
from ..prose import findings_random
from .context import Context


def random_search(ctx: Context):
    """One figure and its findings per combination of the other facets; the first figure may lead the summary."""
    ctx.rep.h2("Random search against gradient descent")
    runs, targets = ctx.runs, ctx.targets
    others = [f for f in ctx.facets if f != "optimizer.kind"]
    parts = [({}, runs)] if not others else \
        [(dict(zip(others, k if isinstance(k, tuple) else (k,))), g) for k, g in runs.groupby(others)]
    for values, sub in parts:
        label = facet_label(values)
        bsf = M.best_so_far(ctx.curves.frame(sub["run_id"]), sub)
        if targets and not bsf.empty:
            table = pd.concat([g.steps.table for g in ctx.groups if g.runs["run_id"].isin(sub["run_id"]).any()])
            lines = [f"{label}: {s}" if label else s for s in findings_random(bsf, table, targets[0])]
            ctx.rep.ul(lines)
            ctx.headlines.extend(_headlines(bsf, lines))
        name = "random_vs_gd" + (f"_{load.slug_text('_'.join(map(value_text, values.values())))}" if label else "")
        ctx.rep.figure(name, "Best loss so far against loss evaluations" + (f" — {label}" if label else ""),
                       lambda bsf=bsf: FC.random_vs_gd(bsf, targets[0] if targets else None))
        ctx.headline_figure = ctx.headline_figure or name


def _headlines(bsf: pd.DataFrame, lines: list[str]) -> list[str]:
    """Random search's line, then that of the gradient-descent learning rate that ended lowest.

    ``lines`` are ``findings_random``'s, one per optimizer × learning rate in sorted order.
    """
    end = bsf[bsf.groupby("run_id")["evaluations"].transform("max") == bsf["evaluations"]]
    rank = end.groupby(["optimizer", "learning_rate"])["best"].median().reset_index()
    rank = rank.assign(line=range(len(rank)), rs=rank["optimizer"] == "random_search")
    rank = rank.sort_values(["rs", "best"], ascending=[False, True])
    return [lines[i] for i in rank.loc[rank["rs"], "line"]][:1] + [lines[i] for i in rank.loc[~rank["rs"], "line"]][:1]
