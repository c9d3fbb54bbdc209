"""The harness against the tools people use instead: the ``peers`` and ``time_to_answer`` sections.

``measure`` runs them into ``bench.json`` (after the grid section, or alone with ``--only``),
``markdown`` writes their part of ``bench.md``. Both need the ``bench`` extra (Optuna, Ray
Tune); without it they are skipped with one line that says how to install it.
"""

from __future__ import annotations

import sys

from . import peers, time_to_answer

SECTIONS = ("peers", "time_to_answer", *peers.PEERS)   # a peer's name alone: that peer only (with the harness)
REPEATS = 2   # each peer and each way to the answer, interleaved (--peer-repeats; --quick: 1)
# --quick: the grid section's small grid for the peers; one seed and one batch size for the answer
QUICK_ANSWER = ["sweep.seeds=1", "sweep.batch_size=[256]"]
TARGET_RAY = 10.0   # Ray Tune's wall time ÷ the harness's, at least this
TARGET_TPE = 5.0    # Optuna TPE's time to the answer ÷ the refining sweep's, at least this


def measure(res: dict, p: dict, only, repeats: int | None):
    """Adds ``peers`` and ``time_to_answer`` (those in ``only``) to ``res``, or why they were skipped."""
    some = [m for m in peers.PEERS if m in only]
    wanted = [s for s in ("peers", "time_to_answer") if s in only or (s == "peers" and some)]
    if not wanted:
        return
    why = peers.missing()
    if why:
        msg = (f"{why} is not installed (the bench extra: "
               f"`.venv/bin/python -m pip install -c constraints.txt -e '.[bench]'`)")
        print(f"[bench] {' and '.join(wanted)} skipped: {msg}", file=sys.stderr, flush=True)
        for s in wanted:
            res[s] = {"skipped": msg}
        return
    n = repeats if repeats is not None else 1 if res["quick"] else REPEATS
    if "peers" in wanted:
        res["peers"] = peers.section(p["grid"], n, peers.PEERS if "peers" in only else some)
    if "time_to_answer" in wanted:
        res["time_to_answer"] = time_to_answer.section(QUICK_ANSWER if res["quick"] else [], n)


def agree(res: dict) -> bool:
    """Whether every peer that ran gave the harness's answer (a peer with another answer voids the comparison)."""
    p = res.get("peers", {})
    return all(p[m]["same_answer"] for m in peers.PEERS if m in p)


def _fmt(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def peers_md(res: dict) -> list[str]:
    """bench.md's table of the peers on the grid."""
    p = res.get("peers")
    if not p:
        return []
    if "skipped" in p:
        return ["## The harness against Ray Tune and Optuna", "", f"Skipped: {p['skipped']}", ""]
    rows = [("harness", "`bpresearch sweep`", p["harness_wall_s"], p["harness_samples_s"], p["configurations"],
             p["harness_points"], "—", 1.0)]
    names = {"ray_tune": "Ray Tune `grid_search`, `MLflowLoggerCallback`, 1 CPU a trial",
             "optuna": "Optuna `GridSampler`, `MLflowCallback`, `log_batch` per trial",
             "optuna_per_point": "Optuna, the same, `log_metric` per evaluation"}
    for m in (m for m in peers.PEERS if m in p):
        q = p[m]
        rows.append((m, names[m], q["wall_s"], q["samples_s"], q["configs"], q["points"],
                     "yes" if q["same_answer"] else "**no**", q["over_harness"]))
    return ["## The harness against Ray Tune and Optuna", "",
            f"The grid ({p['configurations']} configurations), each tool as its documentation shows, training with "
            "the careful user's compiled `lax.scan` and logging the full-training-loss curve into its own fresh "
            "sqlite store; the harness logs every curve and summary. Same answer: the best learning rate and its "
            f"steps at every batch size and target ({', '.join(f'{t:g}' for t in p['targets'])}), read back from "
            "each store by one rule (`bpresearch.verdicts`), equal the harness's. Medians of the repeats "
            "(interleaved).", "",
            "| way | what | median wall s | samples s | configurations | points | same answer | ÷ harness |",
            "|---|---|---:|---|---:|---:|---|---:|",
            *(f"| {m} | {what} | {_fmt(w)} | {', '.join(_fmt(x) for x in ss)} | {c} | {pts:,} | {same} | {r:.2f} |"
              for m, what, w, ss, c, pts, same, r in rows),
            "",
            " ".join(targets(p)) or "No peer with a target was measured.",
            ""]


def targets(p: dict) -> list[str]:
    """The targets on the grid, for the peers that were measured."""
    out = []
    if "ray_tune" in p:
        r = p["ray_tune"]["over_harness"]
        out.append(f"Target: Ray Tune at least {TARGET_RAY:g}× the harness's time ({r:.1f}×: "
                   f"{'met' if r >= TARGET_RAY else '**missed**'}).")
    if "optuna" in p:
        r = p["optuna"]["over_harness"]
        out.append(f"Target: the harness no slower than the careful Optuna user ({r:.2f}×: "
                   f"{'met' if r >= 1 else '**missed**'}).")
    return out


def answer_md(res: dict) -> list[str]:
    """bench.md's table of the time to the answer."""
    a = res.get("time_to_answer")
    if not a:
        return []
    if "skipped" in a:
        return ["## Time to the answer", "", f"Skipped: {a['skipped']}", ""]
    ref = ", ".join(f"{k}: {v['learning_rate']:.4g} ({v['steps']:g} steps)" for k, v in a["reference"].items()
                    if v["learning_rate"] is not None)
    lines = ["## Time to the answer", "",
             f"The best learning rate per batch size to ×{a['resolution']:.3g}, over {a['lr_range'][0]:g} … "
             f"{a['lr_range'][1]:g} (`{a['question']}`{', overrides ' + str(a['overrides']) if a['overrides'] else ''}). "
             f"The dense grid's answer is the reference: {ref}. Resolved: at every batch size, a best learning rate "
             f"within ×{a['resolution']:.3g} of it that needs no more steps. Optuna's TPE stops as soon as its best "
             f"is resolved (at most {a['max_trials']} trials a batch size; a sampler seed per repeat). "
             f"Each way is timed as {a.get('timed', 'its wall time')}"
             f"{_in_process(a.get('optuna_tpe', {}))}.", "",
             "| way | median wall s | samples s | configurations | resolved | answer | ÷ dense grid |",
             "|---|---:|---|---:|---|---|---:|"]
    for name, q in a.items():
        if not isinstance(q, dict) or "wall_s" not in q:
            continue
        found = "; ".join(f"{k}: {v['learning_rate']:.4g}" for k, v in q["answer"].items()
                          if v.get("learning_rate") is not None)
        lines.append(f"| {name} | {_fmt(q['wall_s'])} | {', '.join(_fmt(x) for x in q['samples_s'])} | "
                     f"{q['configs']:g} | {'yes' if q['resolved'] else '**no**'} | {found} | {q['over_dense_grid']:.2f} |")
    if "optuna_tpe" in a and "bpresearch_refine" in a:
        r = a["optuna_tpe"]["wall_s"] / a["bpresearch_refine"]["wall_s"]
        lines += ["", f"Target: Optuna's TPE at least {TARGET_TPE:g}× the refining sweep's time ({r:.1f}×: "
                  f"{'met' if r >= TARGET_TPE else '**missed**'}), and the refining sweep with fewer configurations "
                  f"than the dense grid ({a['bpresearch_refine']['configs']:g} against {a['dense_grid']['configs']:g})."]
    return lines + [""]


def _in_process(tpe: dict) -> str:
    """TPE's trials alone, after its imports and store (what was timed before whole processes)."""
    if "in_process_s" not in tpe:
        return ""
    return (f"; TPE's trials alone, after its imports and its store: {_fmt(tpe['in_process_s'])} s "
            f"({', '.join(_fmt(x) for x in tpe['in_process_samples_s'])})")


def markdown(res: dict) -> list[str]:
    return peers_md(res) + answer_md(res)
