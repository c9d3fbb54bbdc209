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
Then the tools people use instead, Ray Tune and Optuna, on the same grid (``bench.peers``),
and the time each way takes to the answer rather than through a grid (``bench.time_to_answer``);
both in ``bench.versus``, skipped with one line where the ``bench`` extra is not installed.
Writes ``bench.json``, ``bench.md`` and ``scaling.png`` into ``--out``.

Usage: ``python -m bench.run --out reports/bench [--quick] [--only grid,peers,time_to_answer]``
(``--only`` also takes a peer alone: ``ray_tune``, ``optuna``, ``optuna_per_point``)
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

from bpresearch.run.provenance import provenance
from bpresearch.spec import experiment as expmod

from . import measure, versus
from .render import markdown, plot

# A vmapped program rounds differently from a single run (batched against plain matmuls);
# over 1,000 float32 steps the final losses of this grid drift apart by up to ≈ 7e-5.
# A learning rate at the edge of stability amplifies that drift (lr 0.5 at bs 32 gave 1.3e-3),
# which is why bench/grid.toml stops at 0.3. Near zero the drift is better read in absolute
# terms: at final losses of 0.005–0.009 it reaches ≈ 1e-6 (1.0e-4 relative). Two ways agree
# where every final loss differs by at most ATOL + RTOL × |the bare program's| (numpy's isclose).
RTOL = 1e-4
ATOL = 1e-6
TARGET_NAIVE = 20.0  # naive_s / harness_s at least this
TARGET_BARE = {64: 1.2, 256: 1.3}   # harness_s / bare_jax_s at most this, at these many configurations
TARGET_CEILING = 1.25   # sqlite's own executemany at most this many times faster than the write path
TARGET_OUTSIDE_S = 2.0  # the harness's time outside the sweep (process start, imports, store)
METHODS = ("harness", "bare_jax", "careful", "naive_batched", "naive")
BASELINE = os.environ.get("BENCH_BASELINE")  # a checkout of an earlier commit: its harness is measured too


SECTIONS = ("grid",) + versus.SECTIONS   # what --only can pick
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


def _finals(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """The final losses of ``a``'s runs and of the same runs in ``b`` (a's runs must be among b's)."""
    if not a.keys() <= b.keys():
        raise ValueError(f"different runs: {sorted(a.keys() - b.keys())[:3]} …")
    keys = sorted(a)
    return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)


def within(a: dict, b: dict) -> float:
    """The largest |a − b| / (ATOL + RTOL·|b|) over the final losses of ``a``'s runs: at most 1 is agreement."""
    x, y = _finals(a, b)
    return float(np.max(np.abs(x - y) / (ATOL + RTOL * np.abs(y)), initial=0.0))


def max_abs_diff(a: dict, b: dict) -> float:
    x, y = _finals(a, b)
    return float(np.max(np.abs(x - y), initial=0.0))


def max_rel_diff(a: dict, b: dict) -> float:
    """Largest relative difference of final losses between two measurements (a's runs must be among b's)."""
    x, y = _finals(a, b)
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
        "max_abs_diff_vs_bare": {m: max(max_abs_diff(s["finals"], reference) for s in samples[m]) for m in METHODS},
        "agree": all(within(s["finals"], reference) <= 1 for m in METHODS for s in samples[m]),
        "rtol": RTOL, "atol": ATOL,
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


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in names if x not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown section {bad[0] if bad else text!r} "
                                         f"(expected some of: {', '.join(SECTIONS)})")
    return names


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="reports/bench", help="output folder (default reports/bench)")
    ap.add_argument("--quick", action="store_true", help="a small grid and few steps: a smoke test (a few minutes)")
    ap.add_argument("--render", action="store_true", help="only rewrite bench.md and scaling.png from bench.json")
    ap.add_argument("--only", default=",".join(SECTIONS), type=_sections,
                    help=f"comma-separated sections to measure (default: all of {','.join(SECTIONS)})")
    ap.add_argument("--peer-repeats", type=int, default=None,
                    help="repeats of the peers and of the time to the answer (default 2; --quick 1)")
    return ap.parse_args(argv)


def write_path_samples(exp: expmod.Experiment, p: Plan, recs: list, res: dict):
    """The write path against sqlite's own executemany, repeated: fsync times vary from commit to commit.

    Adds the samples and their medians (the ratios' medians taken pair by pair) to ``res``.
    """
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


def other_stores_and_new_store(exp: expmod.Experiment, p: Plan, recs: list, res: dict):
    """The same records into a server and PostgreSQL; then a store created by MLflow, and a first sweep into one."""
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


def scaling_and_repeats(exp: expmod.Experiment, p: Plan, samples: dict, first_s: float, t0: float) -> list[dict]:
    """Every scaling point once; then further repeats of the cheap grid measurements and of the
    scaling points the targets name, while the budget allows one more (the per-point naive
    loop is not repeated). Returns the scaling rows; ``samples`` gains the grid's repeats."""
    points = scaling_points(p)
    sc = {pt: [scaling_sample(p, *pt)] for pt in points}
    again = [pt for pt in points if pt[0] in p["baseline_configs"] and pt[1] == points[0][1]]
    cheap = first_s - sum(s["seconds"] for s in samples["naive"]) + sum(sc[pt][0]["harness_s"] + sc[pt][0]["bare_jax_s"]
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
    return scaling_rows(sc)


def headline_figures(res: dict, steps: int) -> dict:
    """The figures bench.json carries at top level, and each target with whether it was met."""
    g, w = res["grid"], res["tracking_costs"]
    by_configs = {r["configs"]: r for r in res["scaling"] if r["steps"] == steps}
    return {
        "careful_s": g["median_s"]["careful"],
        "points_per_s": w["points_per_s"],
        "sqlite_ceiling_points_per_s": w["ceiling_bulk_points_per_s"],
        "harness_over_bare_by_scaling": {f"{r['configs']}x{r['steps']}": r["harness_over_bare"] for r in res["scaling"]},
        "targets": {
            "naive_over_harness_min": TARGET_NAIVE, "harness_over_bare_max": {str(k): v for k, v in TARGET_BARE.items()},
            "ceiling_over_write_path_max": TARGET_CEILING, "outside_sweep_max_s": TARGET_OUTSIDE_S,
            "naive_met": g["ratios"]["naive_over_harness"] >= TARGET_NAIVE,
            "bare_met": {str(k): by_configs[k]["harness_over_bare"] <= v for k, v in TARGET_BARE.items()
                         if k in by_configs},
            "ceiling_met": w["ceiling_over_write_path"] <= TARGET_CEILING,
            "outside_sweep_met": g["harness_outside_sweep_s"] <= TARGET_OUTSIDE_S,
            "careful_met": g["median_s"]["harness"] < g["median_s"]["careful"]},
    }


def write_report(out: Path, res: dict):
    """bench.md and scaling.png from ``res`` (what ``--render`` redoes from bench.json)."""
    if "scaling" in res:
        plot(res["scaling"], res["plan"], out / "scaling.png")
    (out / "bench.md").write_text(markdown(res))


def measure_grid(res: dict, p: Plan, t0: float):
    """The grid section: the five ways of training, the write path, other stores, scaling, the cache."""
    exp = expmod.load(measure.GRID, p["grid"])
    samples: dict[str, list[dict]] = {m: [] for m in methods_of()}
    first = grid_repeat(exp, p, 0, samples)
    _log("write path against sqlite's own executemany …")
    recs = measure._group_records(exp)
    write_path_samples(exp, p, recs, res)
    other_stores_and_new_store(exp, p, recs, res)
    res["scaling"] = scaling_and_repeats(exp, p, samples, first, t0)
    if time.perf_counter() - t0 + 2 * statistics.median(s["seconds"] for s in samples["harness"]) < p["budget_s"]:
        res["compile_cache"] = compile_cache(p)
    res["grid"] = summarize(exp, p, samples)
    res.update(headline_figures(res, scaling_points(p)[0][1]))


def bench(quick: bool, only: tuple[str, ...] = SECTIONS, peer_repeats: int | None = None) -> dict:
    """Every measurement of ``make bench`` (the ``only`` sections), in order; returns what bench.json holds."""
    t0 = time.perf_counter()
    p = plan(quick)
    res = {"quick": quick, "plan": dict(p), "machine": machine(), "baseline": BASELINE, "sections": list(only)}
    if "grid" in only:
        measure_grid(res, p, t0)
    versus.measure(res, p, only, peer_repeats)
    res["machine"]["load_avg_end"] = os.getloadavg()
    res["bench_wall_s"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    import mlflow  # noqa: F401  (imported first: it configures its loggers on import)
    for name in ("alembic", "mlflow"):  # store creation and run links would drown the progress lines
        logging.getLogger(name).setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        write_report(out, json.loads((out / "bench.json").read_text()))
        return 0
    res = bench(args.quick, args.only, args.peer_repeats)
    (out / "bench.json").write_text(json.dumps(res, indent=2, default=str))  # first: --render can redo the rest
    write_report(out, res)
    _log(f"wrote {out / 'bench.md'}, {out / 'bench.json'}, {out / 'scaling.png'} "
         f"in {res['bench_wall_s'] / 60:.1f} min")
    print(markdown(res))
    return 0 if res.get("grid", {}).get("agree", True) and versus.agree(res) else 1


if __name__ == "__main__":
    sys.exit(main())
