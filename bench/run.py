"""``make bench``: is the harness fast? Measured against the way a sweep is written without it.

On one fixed grid (bench/grid.toml: the digits MLP, 64 configurations in two batch-size
groups, 1,000 steps) five ways of training the same runs are timed, interleaved and
repeated, each into its own copy of an empty sqlite store (MLflow creates a store once;
every sweep after the first finds it, so creating one, and the harness's first sweep into
a new store, are measured on their own):

- ``naive_s``: a Python loop over steps per configuration, ``mlflow.log_metric`` per point
  (3–7 ms a point: timed on 2 runs per batch size and extrapolated to the grid);
- ``naive_batched_s``: the same loop, each run's curves written once with ``log_batch``;
- ``careful_s``: each configuration's whole run one jitted ``lax.scan`` (learning rate and
  seed as arguments: one compilation per batch size), curves written with ``log_batch``;
- ``harness_s``: ``bpresearch sweep`` as a subprocess, everything included;
- ``bare_jax_s``: the harness's compiled, vmapped programs alone (``sweep.run_group``).

Their final full training losses must agree, or the comparison is void. The write path
is measured against sqlite itself (``measure.write_path``: the same metric rows by a bare
``executemany``), and the same records go into a local ``mlflow server`` and a throwaway
PostgreSQL (``measure.other_stores``: MLflow's client path, each call timed apart; skipped
with the reason where PostgreSQL is missing). Then the harness and its bare programs are timed side by side on
1 … 256 configurations and 250 … 4,000 steps. The first repeat of everything runs first;
the cheap measurements repeat after the scaling runs while the budget (about 10 minutes
in all) allows. ``BENCH_BASELINE=<checkout of an earlier commit>`` adds that commit's
harness beside this one (``harness_before``), at the grid and at 64 and 256 configurations.
Writes ``bench.json``, ``bench.md`` and ``scaling.png`` into ``--out``.

Usage: ``python -m bench.run --out reports/bench [--quick]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bpresearch import experiment as expmod
from bpresearch.provenance import provenance

from . import measure

# A vmapped program rounds differently from a single run (batched against plain matmuls);
# over 1,000 float32 steps the final losses of this grid drift apart by up to ≈ 7e-5.
# A learning rate at the edge of stability amplifies that drift (lr 0.5 at bs 32 gave 1.3e-3),
# which is why bench/grid.toml stops at 0.3.
RTOL = 1e-4
TARGET_NAIVE = 20.0  # naive_s / harness_s at least this
TARGET_BARE = {64: 1.2, 256: 1.3}   # harness_s / bare_jax_s at most this, at these many configurations
TARGET_CEILING = 1.25   # sqlite's own executemany at most this many times faster than the write path
TARGET_OUTSIDE_S = 2.0  # the harness's time outside the sweep (process start, imports, store)
METHODS = ("harness", "bare_jax", "careful", "naive_batched", "naive")
BASELINE = os.environ.get("BENCH_BASELINE")  # a checkout of an earlier commit: its harness is measured too


Plan = dict  # what one benchmark runs: grid overrides, repeats, scaling points (written to bench.json)


def plan(quick: bool) -> Plan:
    """The full benchmark, or a smoke test of every code path in a few minutes."""
    if quick:
        return dict(grid=["train.steps=100", "sweep.learning_rate={min = 0.003, max = 0.3, num = 4}", "sweep.seeds=1"],
                    repeats=1, naive_repeats=1, scaling_bs=32, scaling_configs=[1, 4],
                    scaling_steps=[50, 100], scaling_steps_configs=4, lr_range=(0.003, 0.3), budget_s=600,
                    naive_sample=1, write_copies=1, write_repeats=1, other_copies=1, baseline_configs=[4])
    # The per-point naive loop costs 3–7 ms a point × 141,000 points ≈ 8–16 minutes, so it
    # is timed on 2 runs per batch size, once; the rest up to three times, interleaved, as
    # long as the budget (the 10 minutes `make bench` may take, with a margin) allows.
    return dict(grid=[], repeats=3, naive_repeats=1, budget_s=9 * 60, naive_sample=2, write_copies=8, write_repeats=3, other_copies=1,
                scaling_bs=32, scaling_configs=[1, 4, 16, 64, 256], baseline_configs=[64, 256],
                scaling_steps=[250, 1000, 4000], scaling_steps_configs=64, lr_range=(0.003, 0.3))


def scaling_overrides(p: Plan, configs: int, steps: int) -> list[str]:
    """``--set`` overrides for a grid of ``configs`` runs (≤ 16 learning rates × seeds) at one batch size."""
    lrs = min(configs, 16)
    lo, hi = p["lr_range"]
    return [f"train.steps={steps}", f"sweep.batch_size=[{p['scaling_bs']}]", f"sweep.seeds={configs // lrs}",
            f"sweep.learning_rate={{min = {lo}, max = {hi}, num = {lrs}}}"]


def machine() -> dict:
    """Date, machine, versions and commit, recorded with the figures."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / 2**20, 1),
            "load_avg_start": os.getloadavg(), "python": platform.python_version(),
            **{k: v for k, v in provenance(str(measure.ROOT)).items()
               if k.startswith(("git.", "version.", "jax."))}}


def max_rel_diff(a: dict, b: dict) -> float:
    """Largest relative difference of final losses between two measurements (a's runs must be among b's)."""
    if not a.keys() <= b.keys():
        raise ValueError(f"different runs: {sorted(a.keys() - b.keys())[:3]} …")
    keys = sorted(a)
    x, y = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30)))


def _log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure_one(method: str, exp: expmod.Experiment, p: Plan) -> dict:
    """One measurement of ``method`` on the grid."""
    if method == "harness":
        return measure.harness(p["grid"])
    if method == "harness_before":
        return measure.harness(p["grid"], source=BASELINE)
    if method == "bare_jax":
        return measure.bare(exp)
    if method == "careful":
        return measure.careful(exp)
    if method == "naive":
        return measure.naive_sampled(exp, p["naive_sample"])
    return measure.naive_loop(exp, batched=True)


def grid_repeat(exp: expmod.Experiment, p: Plan, rep: int, samples: dict[str, list[dict]]) -> float:
    """Repeat ``rep`` of the grid's measurements, in an order rotated by ``rep``; returns its seconds."""
    t0 = time.perf_counter()
    methods = methods_of()
    order = methods[rep % len(methods):] + methods[:rep % len(methods)]
    for m in order:
        if m == "naive" and rep >= p["naive_repeats"]:
            continue
        _log(f"repeat {rep + 1}/{p['repeats']}: {m} on {len(exp.runs)} configurations …")
        r = measure_one(m, exp, p)
        _log(f"  {m}: {r['seconds']:.1f}s, {r['compiles']} compilations, {r['points']:,} points")
        samples[m].append(r)
    return time.perf_counter() - t0


def methods_of() -> tuple[str, ...]:
    return METHODS + (("harness_before",) if BASELINE else ())


def summarize(exp: expmod.Experiment, p: Plan, samples: dict[str, list[dict]]) -> dict:
    """Medians, ratios, compilations, the harness's own split of its time, and the agreement check."""
    METHODS = methods_of()
    reference = samples["bare_jax"][0]["finals"]
    agreement = {m: max(max_rel_diff(s["finals"], reference) for s in samples[m]) for m in METHODS}
    med = {m: statistics.median(s["seconds"] for s in samples[m]) for m in METHODS}
    cpu = {m: statistics.median(s["cpu_s"] for s in samples[m]) for m in METHODS}
    h = samples["harness"]
    sweep_metrics = {k: statistics.median(s["sweep"][k] for s in h)
                     for k in ("wall_time_s", "compile_time_s", "train_time_s", "tracking_time_s",
                               "tracking_wait_s", "metric_points")}
    return {
        "configurations": len(exp.runs),
        "groups": len(exp.groups()),
        "steps": exp.runs[0].config["train"]["steps"],
        "overrides": p["grid"],
        "repeats": {m: len(samples[m]) for m in METHODS},
        "median_s": med,
        "samples_s": {m: [s["seconds"] for s in samples[m]] for m in METHODS},
        "median_cpu_s": cpu,
        "ratios": {"naive_over_harness": med["naive"] / med["harness"],
                   "naive_batched_over_harness": med["naive_batched"] / med["harness"],
                   "careful_over_harness": med["careful"] / med["harness"],
                   "harness_over_bare_jax": med["harness"] / med["bare_jax"],
                   **({"harness_before_over_bare_jax": med["harness_before"] / med["bare_jax"],
                       "harness_before_over_harness": med["harness_before"] / med["harness"]} if BASELINE else {})},
        "compiles": {m: samples[m][0]["compiles"] for m in METHODS},
        "compiles_by_name": {m: samples[m][0]["compiles_by_name"] for m in METHODS},
        "compile_s": {m: statistics.median(s["compile_s"] for s in samples[m]) for m in METHODS},
        "points": {m: samples[m][0]["points"] for m in METHODS},
        "harness_sweep_metrics": sweep_metrics,
        "harness_outside_sweep_s": statistics.median(s["seconds"] - s["sweep"]["wall_time_s"] for s in h),
        "harness_points_per_s": statistics.median(s["sweep"]["metric_points"] / s["sweep"]["tracking_time_s"]
                                                  for s in h),
        **({"harness_before_outside_sweep_s": statistics.median(s["seconds"] - s["sweep"]["wall_time_s"]
                                                                for s in samples["harness_before"]),
            "harness_before_points_per_s": statistics.median(s["sweep"]["metric_points"] / s["sweep"]["tracking_time_s"]
                                                             for s in samples["harness_before"])}
           if BASELINE else {}),
        "tracking_share": sweep_metrics["tracking_time_s"] / med["harness"],
        "bare_group_compile_s": statistics.median(s["group_compile_s"] for s in samples["bare_jax"]),
        "bare_group_run_s": statistics.median(s["group_run_s"] for s in samples["bare_jax"]),
        "max_rel_diff_vs_bare": agreement,
        "agree": all(v <= RTOL for v in agreement.values()),
        "rtol": RTOL,
    }


def compile_cache(p: Plan) -> dict:
    """The harness twice with a persistent JAX compilation cache: what a second sweep would save."""
    with tempfile.TemporaryDirectory(prefix="bench-jax-cache-") as cache:
        env = {"JAX_COMPILATION_CACHE_DIR": cache}
        _log("harness with a persistent compilation cache, cold then warm …")
        cold, warm = measure.harness(p["grid"], env), measure.harness(p["grid"], env)
    _log(f"  cold {cold['seconds']:.1f}s, warm {warm['seconds']:.1f}s")
    return {"cold_s": cold["seconds"], "warm_s": warm["seconds"],
            "cold_compile_time_s": cold["sweep"]["compile_time_s"], "warm_compile_time_s": warm["sweep"]["compile_time_s"]}


def scaling_points(p: Plan) -> list[tuple[int, int]]:
    steps_default = p["scaling_steps"][len(p["scaling_steps"]) // 2]
    points = [(c, steps_default) for c in p["scaling_configs"]]
    return points + [(p["scaling_steps_configs"], s) for s in p["scaling_steps"]
                     if (p["scaling_steps_configs"], s) not in points]


def scaling_sample(p: Plan, configs: int, steps: int) -> dict:
    """The harness and its compiled programs alone, side by side, on ``configs`` × ``steps``."""
    o = scaling_overrides(p, configs, steps)
    _log(f"scaling: {configs} configurations × {steps} steps …")
    b = measure.bare(expmod.load(measure.GRID, o))
    h = measure.harness(o)
    s = h["sweep"]
    out = {"configs": configs, "steps": steps, "harness_s": h["seconds"], "bare_jax_s": b["seconds"],
           "harness_over_bare": h["seconds"] / b["seconds"],
           "compile_s": s["compile_time_s"], "train_s": s["train_time_s"],
           "tracking_s": s["tracking_time_s"], "tracking_wait_s": s["tracking_wait_s"],
           "sweep_wall_s": s["wall_time_s"], "outside_sweep_s": h["seconds"] - s["wall_time_s"],
           "points": h["points"], "points_per_s": h["points"] / s["tracking_time_s"], "compiles": h["compiles"],
           "per_config_s": h["seconds"] / configs, "bare_compile_s": b["group_compile_s"],
           "max_rel_diff_vs_bare": max_rel_diff(h["finals"], b["finals"])}
    if BASELINE and configs in p["baseline_configs"] and steps == p["scaling_steps"][len(p["scaling_steps"]) // 2]:
        hb = measure.harness(o, source=BASELINE)
        out.update({"harness_before_s": hb["seconds"], "harness_before_over_bare": hb["seconds"] / b["seconds"],
                    "before_points_per_s": hb["points"] / hb["sweep"]["tracking_time_s"],
                    "before_outside_sweep_s": hb["seconds"] - hb["sweep"]["wall_time_s"],
                    "before_compile_s": hb["sweep"]["compile_time_s"]})
    _log(f"  harness {h['seconds']:.1f}s, bare {b['seconds']:.1f}s"
         + (f", harness before {out['harness_before_s']:.1f}s" if "harness_before_s" in out else ""))
    return out


def scaling_rows(samples: dict[tuple, list[dict]]) -> list[dict]:
    """One row per scaling point: the median of each figure over its samples, and the sample count."""
    rows = []
    for pt, ss in samples.items():
        row = {k: statistics.median(x[k] for x in ss) if isinstance(v, float) else v for k, v in ss[0].items()
               if all(k in x for x in ss)}
        row["repeats"] = len(ss)
        row["harness_over_bare_samples"] = [x["harness_over_bare"] for x in ss]
        rows.append(row)
    return rows


def plot(rows: list[dict], p: Plan, path: Path):
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
    if not o:   # a bench.json from before this measurement (--render)
        return []
    lines = ["## Other stores: an mlflow server and PostgreSQL", "",
             f"The same records ({res['plan'].get('other_copies', 1)} × the grid's first group) by `Tracker.log_runs` "
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


def markdown(res: dict) -> str:
    """bench.md: the figures, whether the targets are met, and where the time goes."""
    g, m, sc, t = res["grid"], res["machine"], res["scaling"], res["tracking_costs"]
    med, rat = g["median_s"], g["ratios"]
    sm = g["harness_sweep_metrics"]
    ok = lambda b: "met" if b else "**missed**"  # noqa: E731
    lines = [
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
        "| measurement | median s | repeats | samples s | median CPU s | XLA compilations | compile s | "
        "metric points |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    names = {"naive": "`naive_s`: step loop, `log_metric` per point (extrapolated, see below)",
             "naive_batched": "`naive_batched_s`: step loop, `log_batch` per run",
             "careful": "`careful_s`: one jitted `lax.scan` per run, `log_batch` per run",
             "harness": "`harness_s`: `bpresearch sweep` subprocess, all in",
             "harness_before": f"`harness_before_s`: the same, at the baseline checkout `{res.get('baseline')}`",
             "bare_jax": "`bare_jax_s`: `sweep.run_group` per group, no tracking"}
    for k in ("naive", "naive_batched", "careful", "harness", "harness_before", "bare_jax"):
        if k not in med:
            continue
        lines.append(f"| {names[k]} | {med[k]:.1f} | {g['repeats'][k]} | "
                     f"{', '.join(f'{s:.1f}' for s in g['samples_s'][k])} | {g['median_cpu_s'][k]:.1f} | {g['compiles'][k]} | "
                     f"{g['compile_s'][k]:.1f} | {g['points'][k]:,} |")
    plan = res["plan"]
    lines += ["", f"The per-point naive loop trained {plan['naive_sample']} run(s) per batch size, once: at 3–7 ms a "
              "`log_metric` call the whole grid alone would take 8–16 minutes. `naive_s` is, per batch size, the "
              "first run (which compiles) plus the mean of the others times the remaining runs. The other "
              f"measurements ran {plan['repeats']} times where the {plan['budget_s'] / 60:.0f}-minute budget allowed "
              f"({g['repeats']['harness']} here): the first repeat before the write-path and scaling runs, the "
              "others after them."]
    tgt = res["targets"]
    by = {r["configs"]: r for r in sc if r["steps"] == g["steps"]}
    ceiling = t.get("ceiling_over_write_path", t["ceiling_bulk_points_per_s"] / t["points_per_s"])
    lines += [
        "",
        "| figure | value | target | |",
        "|---|---:|---:|---|",
        f"| `naive_s / harness_s` | {rat['naive_over_harness']:.1f} | ≥ {TARGET_NAIVE:g} | {ok(tgt['naive_met'])} |",
        f"| `naive_batched_s / harness_s` | {rat['naive_batched_over_harness']:.1f} | | |",
        f"| `careful_s / harness_s` | {rat['careful_over_harness']:.2f} | > 1 | {ok(tgt['careful_met'])} |",
        f"| `harness_s / bare_jax_s`, this grid ({g['configurations']} configurations, {g['groups']} groups) | "
        f"{rat['harness_over_bare_jax']:.2f} | | |",
    ]
    for k, v in TARGET_BARE.items():
        if k in by:
            r = by[k]
            lines.append(f"| harness ÷ bare, {k} configurations × {r['steps']:,} steps (scaling, median of "
                         f"{r['repeats']}) | {r['harness_over_bare']:.2f} | ≤ {v:g} | {ok(tgt['bare_met'][str(k)])} |")
    lines += [
        f"| write path: sqlite's own `executemany` ÷ the harness's write path (points a second; median over "
        f"{len(res.get('tracking_costs_samples', [t]))} pairs) | {ceiling:.2f} | "
        f"≤ {TARGET_CEILING:g} | {ok(tgt['ceiling_met'])} |",
        f"| harness time outside the sweep (process start, imports, data, opening the store) | "
        f"{g['harness_outside_sweep_s']:.2f} s | ≤ {TARGET_OUTSIDE_S:g} s | {ok(tgt['outside_sweep_met'])} |",
    ]
    if "store_creation_s" in res:
        nw = res["harness_new_store"]
        lines += [f"| creating a new store (MLflow's schema migrations; once per store; median of "
                  f"{len(res['store_creation_s'])}) | {statistics.median(res['store_creation_s']):.2f} s | | |",
                  f"| the harness's first sweep into a new store: all in, and outside the sweep (1 sample) | "
                  f"{nw['seconds']:.1f} s, {nw['outside_sweep_s']:.2f} s | | |"]
    if "harness_before" in med:
        lines += ["", "Before and after, side by side in this run (the baseline checkout's harness against this one):", "",
                  "| figure | before | after |", "|---|---:|---:|",
                  f"| grid: harness s | {med['harness_before']:.1f} | {med['harness']:.1f} |",
                  f"| grid: harness ÷ bare | {rat['harness_before_over_bare_jax']:.2f} | {rat['harness_over_bare_jax']:.2f} |",
                  f"| grid: time outside the sweep s | {g['harness_before_outside_sweep_s']:.2f} | "
                  f"{g['harness_outside_sweep_s']:.2f} |",
                  f"| grid: tracking points a second (metric points ÷ writer time) | "
                  f"{g['harness_before_points_per_s']:,.0f} | {g['harness_points_per_s']:,.0f} |"]
        for k in TARGET_BARE:
            r = by.get(k, {})
            if "harness_before_s" in r:
                lines.append(f"| {k} configurations: harness ÷ bare | {r['harness_before_over_bare']:.2f} | "
                             f"{r['harness_over_bare']:.2f} |")
                lines.append(f"| {k} configurations: tracking points a second | {r['before_points_per_s']:,.0f} | "
                             f"{r['points_per_s']:,.0f} |")
    lines += [
        "",
        f"**Agreement** (final full training loss of every configuration against `bare_jax`, largest "
        f"relative difference over all repeats; tolerance {g['rtol']:g}): "
        + ", ".join(f"{k} {v:.1e}" for k, v in g["max_rel_diff_vs_bare"].items())
        + (" — all agree, the comparison holds." if g["agree"] else " — **they disagree: the comparison is void.**"),
        "",
        "## The write path against sqlite itself",
        "",
        f"{t['runs']} runs ({t['full_points']:,} metric points: the grid's first group of real records, "
        f"{plan['write_copies']} times over) written by `Tracker.log_runs` into a fresh store, one call per group as "
        "the sweep does (runs, tags, params, config artifacts, every point and `latest_metrics`, "
        f"≤ {measure.sqlstore.MAX_POINTS:,} points a transaction); then the very same {t['ceiling_points']:,} "
        "metric rows, built beforehand, by one bare `sqlite3` `executemany` into MLflow's `metrics` table "
        "(composite primary key, two indexes) of another fresh store, one transaction, and once more in the "
        f"write path's own commits (one a group). Medians of {len(res.get('tracking_costs_samples', [t]))} "
        "measurements (commit times vary with the disk); the ratios are taken pair by pair:",
        "",
        "| writer | points a second |",
        "|---|---:|",
        f"| `Tracker.log_runs` (all in) | {t['points_per_s']:,.0f} |",
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
        *([f"Ceiling ÷ write path, pair by pair: "
           + ", ".join(f"{x['ceiling_bulk_points_per_s'] / x['points_per_s']:.2f}" for x in res["tracking_costs_samples"])
           + " (one transaction); "
           + ", ".join(f"{x['ceiling_commits_points_per_s'] / x['points_per_s']:.2f}" for x in res["tracking_costs_samples"])
           + " (the write path's commits).", ""] if res.get("tracking_costs_samples") else []),
        f"Fixed cost of a run on the write path (runs, tags and params rows, the config artifact file): "
        f"{t['per_run_s'] * 1000:.1f} ms; per metric point {t['per_point_us']:.1f} µs. MLflow's client path: "
        f"{t['mlflow_client_s_per_run'] * 1000:.0f} ms a run all in.",
        "",
        *other_stores_md(res),
        "## Where the harness's time goes (medians of the parent sweep run's metrics)",
        "",
        "| part | s | share of `harness_s` |",
        "|---|---:|---:|",
    ]
    parts = [("process start, imports, data, opening the store (outside the sweep)", g["harness_outside_sweep_s"]),
             ("compilation (main thread)", sm["compile_time_s"]),
             ("training (main thread)", sm["train_time_s"]),
             ("waiting for the writer thread at the end", sm["tracking_wait_s"]),
             ("tracking writes in all (writer thread, overlaps training)", sm["tracking_time_s"])]
    for label, s in parts:
        lines.append(f"| {label} | {s:.1f} | {100 * s / med['harness']:.0f}% |")
    lines += ["", f"The bare programs' own compilation: {g['bare_group_compile_s']:.1f} s (median)."]
    if "compile_cache" in res:
        lines += [
            "",
            f"The persistent JAX compilation cache (the harness keeps one in `~/.cache/bpresearch/jax`; every "
            f"measurement above starts with an empty one): the same sweep took {res['compile_cache']['cold_s']:.1f} s "
            f"cold and {res['compile_cache']['warm_s']:.1f} s warm (compilation "
            f"{res['compile_cache']['cold_compile_time_s']:.1f} s → {res['compile_cache']['warm_compile_time_s']:.1f} s)."]
    lines += [
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
    for r in sc:
        lines.append(f"| {r['configs']} | {r['steps']:,} | {r['repeats']} | {r['harness_s']:.1f} | "
                     f"{r['bare_jax_s']:.1f} | {r['harness_over_bare']:.2f} | {r['per_config_s']:.2f} | "
                     f"{r['compile_s']:.1f} | {r['bare_compile_s']:.1f} | {r['train_s']:.1f} | {r['tracking_s']:.1f} | "
                     f"{r['points_per_s']:,.0f} | {r['tracking_wait_s']:.1f} | {r['outside_sweep_s']:.1f} | "
                     f"{r['points']:,} | {r['compiles']} |")
    lines += ["", f"Benchmark wall time: {res['bench_wall_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="reports/bench", help="output folder (default reports/bench)")
    ap.add_argument("--quick", action="store_true", help="a small grid and few steps: a smoke test (a few minutes)")
    ap.add_argument("--render", action="store_true", help="only rewrite bench.md and scaling.png from bench.json")
    args = ap.parse_args(argv)
    import mlflow  # noqa: F401  (imported first: it configures its loggers on import)
    for name in ("alembic", "mlflow"):  # store creation and run links would drown the progress lines
        logging.getLogger(name).setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        res = json.loads((out / "bench.json").read_text())
        plot(res["scaling"], res["plan"], out / "scaling.png")  # noqa: F821
        (out / "bench.md").write_text(markdown(res))
        return 0
    t0 = time.perf_counter()
    p = plan(args.quick)
    res = {"quick": args.quick, "plan": dict(p), "machine": machine(), "baseline": BASELINE}
    exp = expmod.load(measure.GRID, p["grid"])
    samples: dict[str, list[dict]] = {m: [] for m in methods_of()}
    first = grid_repeat(exp, p, 0, samples)
    _log("write path against sqlite's own executemany …")
    recs = measure._group_records(exp)
    # fsync times vary from commit to commit: repeated, medians (and the ratio's median over pairs)
    ws = []
    for _ in range(p.get("write_repeats", 1)):
        ws.append(measure.write_path(exp, p["write_copies"], recs))
        _log(f"  {ws[-1]['points_per_s']:,.0f} points/s; ceiling {ws[-1]['ceiling_bulk_points_per_s']:,.0f} "
             f"(in the write path's commits {ws[-1]['ceiling_commits_points_per_s']:,.0f}; "
             f"sqlite defaults {ws[-1]['ceiling_defaults_points_per_s']:,.0f})")
    res["tracking_costs_samples"] = ws
    res["tracking_costs"] = w = {k: statistics.median(x[k] for x in ws) for k in ws[0]}
    w["ceiling_over_write_path"] = statistics.median(x["ceiling_bulk_points_per_s"] / x["points_per_s"] for x in ws)
    w["ceiling_commits_over_write_path"] = statistics.median(x["ceiling_commits_points_per_s"] / x["points_per_s"]
                                                             for x in ws)
    _log("the same records into an mlflow server and into PostgreSQL (MLflow's client path) …")
    res["other_stores"] = measure.other_stores(exp, p["other_copies"], recs)
    for name, o in res["other_stores"].items():
        res[f"{name}_points_per_s"] = o.get("points_per_s")   # None: skipped (the reason is in other_stores)
        _log(f"  {name}: " + (f"{o['points_per_s']:,.0f} points/s" if "skipped" not in o else f"skipped: {o['skipped']}"))
    _log("a new store: created by MLflow, and the harness's first sweep into one …")
    res["store_creation_s"] = measure.store_creation()
    fresh = measure.harness(p["grid"], new_store=True)
    res["harness_new_store"] = {"seconds": fresh["seconds"], "outside_sweep_s": fresh["seconds"] - fresh["sweep"]["wall_time_s"]}
    _log(f"  creation {statistics.median(res['store_creation_s']):.2f}s; harness {fresh['seconds']:.1f}s")
    points = scaling_points(p)
    sc = {pt: [scaling_sample(p, *pt)] for pt in points}
    # Further repeats of the cheap grid measurements and of the scaling points the targets
    # name, while the budget allows one more (the per-point naive loop is not repeated).
    again = [pt for pt in points if pt[0] in p["baseline_configs"] and pt[1] == points[0][1]]
    cheap = first - sum(s["seconds"] for s in samples["naive"]) + sum(sc[pt][0]["harness_s"] + sc[pt][0]["bare_jax_s"]
                                                                       for pt in again)
    for rep in range(1, p["repeats"]):
        if time.perf_counter() - t0 + cheap > p["budget_s"]:
            _log(f"budget: stopping after {rep} repeat(s)")
            break
        t1 = time.perf_counter()
        grid_repeat(exp, p, rep, samples)
        for pt in again:
            sc[pt].append(scaling_sample(p, *pt))
        cheap = time.perf_counter() - t1
    res["scaling"] = scaling_rows(sc)
    if time.perf_counter() - t0 + 2 * statistics.median(s["seconds"] for s in samples["harness"]) < p["budget_s"]:
        res["compile_cache"] = compile_cache(p)
    res["grid"] = g = summarize(exp, p, samples)
    by_configs = {r["configs"]: r for r in res["scaling"] if r["steps"] == points[0][1]}
    res["careful_s"] = g["median_s"]["careful"]
    res["points_per_s"] = w["points_per_s"]
    res["sqlite_ceiling_points_per_s"] = w["ceiling_bulk_points_per_s"]
    res["harness_over_bare_by_scaling"] = {f"{r['configs']}x{r['steps']}": r["harness_over_bare"]
                                           for r in res["scaling"]}
    res["targets"] = {
        "naive_over_harness_min": TARGET_NAIVE, "harness_over_bare_max": {str(k): v for k, v in TARGET_BARE.items()},
        "ceiling_over_write_path_max": TARGET_CEILING, "outside_sweep_max_s": TARGET_OUTSIDE_S,
        "naive_met": g["ratios"]["naive_over_harness"] >= TARGET_NAIVE,
        "bare_met": {str(k): by_configs[k]["harness_over_bare"] <= v for k, v in TARGET_BARE.items() if k in by_configs},
        "ceiling_met": w["ceiling_over_write_path"] <= TARGET_CEILING,
        "outside_sweep_met": g["harness_outside_sweep_s"] <= TARGET_OUTSIDE_S,
        "careful_met": g["median_s"]["harness"] < g["median_s"]["careful"]}
    res["machine"]["load_avg_end"] = os.getloadavg()
    res["bench_wall_s"] = time.perf_counter() - t0
    (out / "bench.json").write_text(json.dumps(res, indent=2, default=str))  # first: --render can redo the rest
    plot(res["scaling"], p, out / "scaling.png")
    (out / "bench.md").write_text(markdown(res))
    _log(f"wrote {out / 'bench.md'}, {out / 'bench.json'}, {out / 'scaling.png'} "
         f"in {res['bench_wall_s'] / 60:.1f} min")
    print(markdown(res))
    return 0 if res["grid"]["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
