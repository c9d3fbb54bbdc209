"""``make bench``'s report: ``bench.md`` and ``scaling.png`` from the figures ``bench.run`` measured.

Pure rendering of ``bench.json`` (the targets come from it too), so ``python -m bench.run
--render`` can redo the report of an earlier run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bpresearch.store import sqlstore

from . import versus


def plot(rows: list[dict], p: dict, path: Path):
    """Two panels: seconds against configurations (fixed steps) and against steps (fixed configurations)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps_default = p["scaling_steps"][len(p["scaling_steps"]) // 2]
    series = [("harness_s", "harness (bpresearch sweep, all in)", "o-"),
              ("bare_jax_s", "compiled programs alone (floor)", "s--"),
              ("train_s", "harness: training", "d:"),
              ("tracking_s", "harness: tracking (writer thread)", "^:"),
              ("compile_s", "harness: compilation", "v:"),
              ("outside_sweep_s", "harness: process start + store", "x:")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, xkey, sel, title in (
            (axes[0], "configs", lambda r: r["steps"] == steps_default,
             f"{steps_default:,} steps, batch size {p['scaling_bs']}"),
            (axes[1], "steps", lambda r: r["configs"] == p["scaling_steps_configs"],
             f"{p['scaling_steps_configs']} configurations, batch size {p['scaling_bs']}")):
        rs = sorted((r for r in rows if sel(r)), key=lambda r: r[xkey])
        for key, label, style in series:
            ax.plot([r[xkey] for r in rs], [max(r[key], 1e-2) for r in rs], style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([r[xkey] for r in rs], [f"{r[xkey]:,}" for r in rs])
        ax.minorticks_off()
        ax.set_xlabel("configurations" if xkey == "configs" else "steps")
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("bpresearch sweep: wall time against grid size (one fresh sqlite store each)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def other_stores_md(res: dict) -> list[str]:
    """bench.md's "Other stores": a server and PostgreSQL, each client call timed apart, and what limits each."""
    o = res.get("other_stores")
    if not o:   # a bench.json without this measurement (--render)
        return []
    lines = ["## Other stores: an mlflow server and PostgreSQL", "",
             f"The same records ({res['plan'].get('other_copies', 1)} × the grid's first group) by `Store.log_runs` "
             "into a local `mlflow server` (sqlite backend, one worker) and into a throwaway PostgreSQL (fsync off); "
             "neither is sqlite written directly, so both take MLflow's client path (`create_run`, `log_batch` of "
             "params, the metrics, `log_text` of the config, `set_terminated`), each call timed apart:", "",
             "| store | runs | points | points a second | metrics s | per-run calls s | other s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for name, label in (("server", "mlflow server (REST)"), ("postgres", "PostgreSQL")):
        r = o.get(name, {"skipped": "not measured"})
        if "skipped" in r:
            lines.append(f"| {label} | | | skipped: {r['skipped']} | | | |")
            continue
        lines.append(f"| {label} | {r['runs']} | {r['points']:,} | {r['points_per_s']:,.0f} | {r['metrics_s']:.2f} "
                     f"| {r['per_run_calls_s']:.2f} | {r['other_s']:.2f} |")
        share = r["metrics_s"] / r["seconds"]
        if name == "server":
            what = ("the metrics requests limit this path" if r["metrics_s"] > r["per_run_calls_s"] else
                    "the per-run requests (`create_run`, params, config, `set_terminated`, which also GETs the "
                    "run to print its link) limit this path")
            fit = ""
            if "request_fixed_ms" in r:
                per_point = r["request_us_per_point"] * r["points_per_request"] / 1000
                fit = (f" A line through the requests' sizes and times: {r['request_fixed_ms']:.0f} ms a request + "
                       f"{r['request_us_per_point']:.0f} µs a point, so "
                       + ("the points, not the round trips, dominate: the server's own `log_batch` (an ORM row "
                          "a point) is the limit." if per_point > r["request_fixed_ms"] else
                          "the round trips, not the points, dominate."))
            notes.append(f"- **Server**: {r['metrics_s']:.2f} s ({share:.0%}) in "
                         f"{r['calls']['log_batch_metrics']} metrics requests of {r['points_per_request']:,.0f} "
                         f"points on average (≤ 1,000), {r['s_per_metrics_request'] * 1000:.0f} ms each; "
                         f"{r['per_run_calls_s']:.2f} s in the per-run requests "
                         f"({r['per_run_calls_s'] / r['runs'] * 1000:.0f} ms a run): {what}.{fit}")
        else:
            what = ("the bulk insert limits this path" if r["metrics_s"] > r["per_run_calls_s"] else
                    "the per-run client calls limit this path")
            notes.append(f"- **PostgreSQL** ({what}): the bulk insert of the points takes {share:.0%} of the time "
                         f"({r.get('bulk_points_per_s', 0):,.0f} points a second in it, of which "
                         f"{r.get('bulk_db_s', 0):.2f} s of {r['metrics_s']:.2f} s in the driver and database); "
                         f"the per-run client calls {r['per_run_calls_s']:.2f} s "
                         f"({r['per_run_calls_s'] / r['runs'] * 1000:.0f} ms a run: "
                         + ", ".join(f"`{k}` {v / r['runs'] * 1000:.1f}" for k, v in r["phases_s"].items()
                                     if v and k not in ("bulk_insert", "log_batch_metrics")) + " ms).")
    return lines + [""] + notes + [""]


def _ok(met: bool) -> str:
    return "met" if met else "**missed**"


def _header(res: dict) -> list[str]:
    """Title, the machine and versions, and what the grid is."""
    g, m = res["grid"], res["machine"]
    return [
        "# Benchmark: bpresearch against a sweep written without it",
        "",
        f"{m['date']} · {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB · Python {m['python']}, "
        f"jax {m.get('version.jax')}, jaxlib {m.get('version.jaxlib')}, optax {m.get('version.optax')}, "
        f"mlflow {m.get('version.mlflow')}, numpy {m.get('version.numpy')} · backend {m.get('jax.backend')} · "
        f"commit {m.get('git.commit', '?')[:12]} (dirty: {m.get('git.dirty')}) · "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['load_avg_start'])}, at the end "
        f"{', '.join(f'{x:.2f}' for x in m.get('load_avg_end', []))}"
        + (f" (above {m['nproc']}: other work shared the cores; every figure is slower than on an idle machine)"
           if max(m["load_avg_start"][0], m.get("load_avg_end", [0])[0]) > m["nproc"] else "")
        + (" · **quick mode: a smoke test, not the benchmark**" if res["quick"] else ""),
        "",
        f"Grid: `bench/grid.toml` — digits MLP 64-64-32-10, cross-entropy, SGD, {g['configurations']} "
        f"configurations in {g['groups']} compiled groups (batch sizes), {g['steps']:,} steps"
        + (f", overrides {g['overrides']}" if g["overrides"] else "") + ". "
        "Each measurement writes into its own copy of an empty sqlite store in a temporary folder (MLflow "
        "creates a store once; that, and a first sweep into a new store, are measured below), with an empty "
        "JAX compilation cache; measurements are interleaved (each repeat rotates the order) and the table gives medians.",
        "",
    ]


METHOD_NAMES = {"naive": "`naive_s`: step loop, `log_metric` per point (extrapolated, see below)",
                "naive_batched": "`naive_batched_s`: step loop, `log_batch` per run",
                "careful": "`careful_s`: one jitted `lax.scan` per run, `log_batch` per run",
                "harness": "`harness_s`: `bpresearch sweep` subprocess, all in",
                "harness_before": "`harness_before_s`: the same, at the baseline checkout `{baseline}`",
                "bare_jax": "`bare_jax_s`: `sweep.run_group` per group, no tracking"}


def _methods_table(res: dict) -> list[str]:
    """One row per way of training the grid, and how the per-point loop was extrapolated."""
    g, plan = res["grid"], res["plan"]
    med = g["median_s"]
    lines = ["| measurement | median s | repeats | samples s | median CPU s | XLA compilations | compile s | "
             "metric points |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for k, name in METHOD_NAMES.items():
        if k not in med:
            continue
        lines.append(f"| {name.format(baseline=res.get('baseline'))} | {med[k]:.1f} | {g['repeats'][k]} | "
                     f"{', '.join(f'{s:.1f}' for s in g['samples_s'][k])} | {g['median_cpu_s'][k]:.1f} | {g['compiles'][k]} | "
                     f"{g['compile_s'][k]:.1f} | {g['points'][k]:,} |")
    return lines + [
        "", f"The per-point naive loop trained {plan['naive_sample']} run(s) per batch size, once: at 3–7 ms a "
        "`log_metric` call the whole grid alone would take 8–16 minutes. `naive_s` is, per batch size, the "
        "first run (which compiles) plus the mean of the others times the remaining runs. The other "
        f"measurements ran {plan['repeats']} times where the {plan['budget_s'] / 60:.0f}-minute budget allowed "
        f"({g['repeats']['harness']} here): the first repeat before the write-path and scaling runs, the "
        "others after them."]


def _targets_table(res: dict) -> list[str]:
    """Each figure the benchmark sets a target for, its value, and whether it was met."""
    g, t, limits = res["grid"], res["tracking_costs"], res["targets"]
    rat = g["ratios"]
    by = {r["configs"]: r for r in res["scaling"] if r["steps"] == g["steps"]}
    ceiling = t.get("ceiling_over_write_path", t["ceiling_bulk_points_per_s"] / t["points_per_s"])
    lines = [
        "",
        "| figure | value | target | |",
        "|---|---:|---:|---|",
        f"| `naive_s / harness_s` | {rat['naive_over_harness']:.1f} | ≥ {limits['naive_over_harness_min']:g} | {_ok(limits['naive_met'])} |",
        f"| `naive_batched_s / harness_s` | {rat['naive_batched_over_harness']:.1f} | | |",
        f"| `careful_s / harness_s` | {rat['careful_over_harness']:.2f} | > 1 | {_ok(limits['careful_met'])} |",
        f"| `harness_s / bare_jax_s`, this grid ({g['configurations']} configurations, {g['groups']} groups) | "
        f"{rat['harness_over_bare_jax']:.2f} | | |",
    ]
    for k, v in _target_bare(res).items():
        if k in by:
            r = by[k]
            lines.append(f"| harness ÷ bare, {k} configurations × {r['steps']:,} steps (scaling, median of "
                         f"{r['repeats']}) | {r['harness_over_bare']:.2f} | ≤ {v:g} | {_ok(limits['bare_met'][str(k)])} |")
    lines += [
        f"| write path: sqlite's own `executemany` ÷ the harness's write path (points a second; median over "
        f"{len(res.get('tracking_costs_samples', [t]))} pairs) | {ceiling:.2f} | "
        f"≤ {limits['ceiling_over_write_path_max']:g} | {_ok(limits['ceiling_met'])} |",
        f"| harness time outside the sweep (process start, imports, data, opening the store) | "
        f"{g['harness_outside_sweep_s']:.2f} s | ≤ {limits['outside_sweep_max_s']:g} s | {_ok(limits['outside_sweep_met'])} |",
    ]
    if "store_creation_s" in res:
        nw = res["harness_new_store"]
        lines += [f"| creating a new store (MLflow's schema migrations; once per store; median of "
                  f"{len(res['store_creation_s'])}) | {statistics.median(res['store_creation_s']):.2f} s | | |",
                  f"| the harness's first sweep into a new store: all in, and outside the sweep (1 sample) | "
                  f"{nw['seconds']:.1f} s, {nw['outside_sweep_s']:.2f} s | | |"]
    return lines


def _target_bare(res: dict) -> dict[int, float]:
    """harness ÷ bare at most this, at these many configurations."""
    return {int(k): v for k, v in res["targets"]["harness_over_bare_max"].items()}


def _before_after(res: dict) -> list[str]:
    """With ``BENCH_BASELINE``: the baseline checkout's harness beside this one."""
    g = res["grid"]
    med, rat = g["median_s"], g["ratios"]
    if "harness_before" not in med:
        return []
    by = {r["configs"]: r for r in res["scaling"] if r["steps"] == g["steps"]}
    lines = ["", "Before and after, side by side in this run (the baseline checkout's harness against this one):", "",
             "| figure | before | after |", "|---|---:|---:|",
             f"| grid: harness s | {med['harness_before']:.1f} | {med['harness']:.1f} |",
             f"| grid: harness ÷ bare | {rat['harness_before_over_bare_jax']:.2f} | {rat['harness_over_bare_jax']:.2f} |",
             f"| grid: time outside the sweep s | {g['harness_before_outside_sweep_s']:.2f} | "
             f"{g['harness_outside_sweep_s']:.2f} |",
             f"| grid: tracking points a second (metric points ÷ writer time) | "
             f"{g['harness_before_points_per_s']:,.0f} | {g['harness_points_per_s']:,.0f} |"]
    for k in _target_bare(res):
        r = by.get(k, {})
        if "harness_before_s" in r:
            lines.append(f"| {k} configurations: harness ÷ bare | {r['harness_before_over_bare']:.2f} | "
                         f"{r['harness_over_bare']:.2f} |")
            lines.append(f"| {k} configurations: tracking points a second | {r['before_points_per_s']:,.0f} | "
                         f"{r['points_per_s']:,.0f} |")
    return lines


def _agreement(res: dict) -> list[str]:
    """Whether every way of training reached the same final losses (else the comparison is void)."""
    g = res["grid"]
    return [
        "",
        f"**Agreement** (final full training loss of every configuration against `bare_jax`, largest "
        f"relative difference over all repeats; tolerance: the difference at most "
        f"{g.get('atol', 0):g} + {g['rtol']:g} × the loss): "
        + ", ".join(f"{k} {v:.1e}" + (f" ({g['max_abs_diff_vs_bare'][k]:.1e} absolute)"
                                      if "max_abs_diff_vs_bare" in g else "")
                    for k, v in g["max_rel_diff_vs_bare"].items())
        + (" — all agree, the comparison holds." if g["agree"] else " — **they disagree: the comparison is void.**"),
        "",
    ]


def _write_path_md(res: dict) -> list[str]:
    """The harness's sqlite write path against bare ``executemany`` of the same rows, and MLflow's client."""
    t, plan = res["tracking_costs"], res["plan"]
    samples = res.get("tracking_costs_samples")
    return [
        "## The write path against sqlite itself",
        "",
        f"{t['runs']} runs ({t['full_points']:,} metric points: the grid's first group of real records, "
        f"{plan['write_copies']} times over) written by `Store.log_runs` into a fresh store, one call per group as "
        "the sweep does (runs, tags, params, config artifacts, every point and `latest_metrics`, "
        f"≤ {sqlstore.MAX_POINTS:,} points a transaction); then the very same {t['ceiling_points']:,} "
        "metric rows, built beforehand, by one bare `sqlite3` `executemany` into MLflow's `metrics` table "
        "(composite primary key, two indexes) of another fresh store, one transaction, and once more in the "
        f"write path's own commits (one a group). Medians of {len(res.get('tracking_costs_samples', [t]))} "
        "measurements (commit times vary with the disk); the ratios are taken pair by pair:",
        "",
        "| writer | points a second |",
        "|---|---:|",
        f"| `Store.log_runs` (all in) | {t['points_per_s']:,.0f} |",
        *([f"| bare `executemany` in the write path's commits (one a group, each synced) | "
           f"{t['ceiling_commits_points_per_s']:,.0f} |"] if "ceiling_commits_points_per_s" in t else []),
        f"| bare `executemany`, the bulk connection's settings (`cache_size` 256 MiB): the ceiling | "
        f"{t['ceiling_bulk_points_per_s']:,.0f} |",
        f"| bare `executemany`, sqlite's default settings | {t['ceiling_defaults_points_per_s']:,.0f} |",
        f"| bare `executemany`, `cache_size` 256 MiB and `synchronous=OFF` (not used: unsafe on power loss) | "
        f"{t['ceiling_bulk_sync_off_points_per_s']:,.0f} |",
        f"| MLflow's client (`create_run`, `log_batch`, `set_terminated`; 4 runs) | "
        f"{t['mlflow_client_points_per_s']:,.0f} |",
        "",
        *(["Ceiling ÷ write path, pair by pair: "
           + ", ".join(f"{x['ceiling_bulk_points_per_s'] / x['points_per_s']:.2f}" for x in samples)
           + " (one transaction); "
           + ", ".join(f"{x['ceiling_commits_points_per_s'] / x['points_per_s']:.2f}" for x in samples)
           + " (the write path's commits).", ""] if samples else []),
        f"Fixed cost of a run on the write path (runs, tags and params rows, the config artifact file): "
        f"{t['per_run_s'] * 1000:.1f} ms; per metric point {t['per_point_us']:.1f} µs. MLflow's client path: "
        f"{t['mlflow_client_s_per_run'] * 1000:.0f} ms a run all in.",
        "",
    ]


def _time_split(res: dict) -> list[str]:
    """Where the harness's time goes, from its parent sweep run's metrics; the compilation cache."""
    g = res["grid"]
    sm, harness_s = g["harness_sweep_metrics"], g["median_s"]["harness"]
    lines = ["## Where the harness's time goes (medians of the parent sweep run's metrics)",
             "",
             "| part | s | share of `harness_s` |",
             "|---|---:|---:|"]
    parts = [("process start, imports, data, opening the store (outside the sweep)", g["harness_outside_sweep_s"]),
             ("compilation (main thread)", sm["compile_time_s"]),
             ("training (main thread)", sm["train_time_s"]),
             ("waiting for the writer thread at the end", sm["tracking_wait_s"]),
             ("tracking writes in all (writer thread, overlaps training)", sm["tracking_time_s"])]
    for label, s in parts:
        lines.append(f"| {label} | {s:.1f} | {100 * s / harness_s:.0f}% |")
    lines += ["", f"The bare programs' own compilation: {g['bare_group_compile_s']:.1f} s (median)."]
    if "compile_cache" in res:
        cc = res["compile_cache"]
        lines += [
            "",
            f"The persistent JAX compilation cache (the harness keeps one in `~/.cache/bpresearch/jax`; every "
            f"measurement above starts with an empty one): the same sweep took {cc['cold_s']:.1f} s "
            f"cold and {cc['warm_s']:.1f} s warm (compilation "
            f"{cc['cold_compile_time_s']:.1f} s → {cc['warm_compile_time_s']:.1f} s)."]
    return lines


def _scaling_md(res: dict) -> list[str]:
    """The scaling table: harness and bare programs at each grid size, and the bench's own wall time."""
    lines = [
        "",
        "## Scaling",
        "",
        "![scaling](scaling.png)",
        "",
        "Harness and bare programs side by side at each point (medians where repeated).",
        "",
        "| configurations | steps | repeats | harness s | bare s | harness / bare | per configuration s | compile s | "
        "bare compile s | train s | tracking s | points/s | waiting s | outside sweep s | points | compilations |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["scaling"]:
        lines.append(f"| {r['configs']} | {r['steps']:,} | {r['repeats']} | {r['harness_s']:.1f} | "
                     f"{r['bare_jax_s']:.1f} | {r['harness_over_bare']:.2f} | {r['per_config_s']:.2f} | "
                     f"{r['compile_s']:.1f} | {r['bare_compile_s']:.1f} | {r['train_s']:.1f} | {r['tracking_s']:.1f} | "
                     f"{r['points_per_s']:,.0f} | {r['tracking_wait_s']:.1f} | {r['outside_sweep_s']:.1f} | "
                     f"{r['points']:,} | {r['compiles']} |")
    return lines + ["", f"Benchmark wall time: {res['bench_wall_s'] / 60:.1f} min.", ""]


def markdown(res: dict) -> str:
    """bench.md: the figures, whether the targets are met, and where the time goes."""
    sections = (_header, _methods_table, _targets_table, _before_after, _agreement, _write_path_md,
                other_stores_md, _time_split, _scaling_md) if "grid" in res else (_short_header,)
    return "\n".join([*(line for section in sections for line in section(res)), *versus.markdown(res)])


def _short_header(res: dict) -> list[str]:
    """The title and machine of a run without the grid section (``--only``)."""
    m = res["machine"]
    return ["# Benchmark: bpresearch against the tools people use instead", "",
            f"{m['date']} · {m['nproc']} cores, {m['cpu']} · commit {m.get('git.commit', '?')[:12]} · load average "
            f"at start {', '.join(f'{x:.2f}' for x in m['load_avg_start'])}, at the end "
            f"{', '.join(f'{x:.2f}' for x in m.get('load_avg_end', []))}"
            + (" · **quick mode: a smoke test, not the benchmark**" if res["quick"] else ""), ""]
