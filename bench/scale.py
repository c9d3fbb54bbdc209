"""The scale section of ``make bench``: does every stage stay linear as a sweep grows?

One cheap workload (``bench/scale.toml``: least squares on teacher data, 200 steps, batch
sizes 32 and full, 64 learning rates × seeds) is swept into a fresh sqlite store at each
size, swept again (every configuration found finished: the rerun), then read back the ways a researcher reads it: ``bpresearch report``, ``bpresearch
list``, and an ``mlflow server`` over the store answering the run table's sorted search
(the link ``make ui`` prints: child runs by ``summary/final_full_train_loss``) and one
chart's ``get-history-bulk-interval``. Each command runs as its own process, timed with
its peak memory (``os.wait4``). Between two sizes the growth exponent of each time,
``log(t₂/t₁) / log(n₂/n₁)``, says whether it stays linear (≤ 1.1).

Usage: ``python -m bench.scale --out reports/bench [--configs 1024,4096,16384]`` (the second
step of ``make bench``): bench.json in ``--out`` gains ``scale`` (made if missing), and
``scale.md`` the table. The stores go under ``$BENCH_SCALE_DIR`` (default: a temporary
folder), each deleted once measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bpresearch.keys import KIND_TAG, RUN

from .servers import mlflow_server

WORKLOAD = Path(__file__).with_name("scale.toml")
LRS, BATCH_SIZES = 64, 2      # configurations = 64 learning rates × 2 batch sizes × seeds
CONFIGS = (1024, 4096, 16384)
SORT_KEY = "summary/final_full_train_loss"
STAGES = ("sweep_s", "tracking_s", "rerun_s", "report_s", "report_curves_s", "list_s",
          "server_sorted_search_s", "server_history_s")


def _timed(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd``: its wall time, peak memory (max RSS of the process) and output."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here: Popen must not wait for it again
        seconds = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    code = proc.returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}: {text[-2000:]}")
    return {"seconds": seconds, "max_rss_mb": usage.ru_maxrss / 1024, "output": text}


def _post(url: str, body: dict) -> float:
    """Seconds for one JSON POST (the answer read in full)."""
    t0 = time.perf_counter()
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()
    return time.perf_counter() - t0


def _get(url: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        data = json.loads(r.read())
    return time.perf_counter() - t0, data


def server_reads(uri: str, folder: Path, repeats: int = 3) -> dict:
    """The MLflow UI's two slow requests on a big store, each the median of ``repeats``."""
    with mlflow_server(uri, folder) as base:
        api = f"{base}/api/2.0/mlflow"
        _, exps = _get(f"{api}/experiments/search?max_results=10")
        exp_id = next(e["experiment_id"] for e in exps["experiments"] if e["name"] == "scale")
        search = {"experiment_ids": [exp_id], "max_results": 100, "order_by": [f"metrics.`{SORT_KEY}` ASC"],
                  "filter": f"tags.`{KIND_TAG}` = '{RUN}'", "run_view_type": "ACTIVE_ONLY"}
        t_sort = sorted(_post(f"{api}/runs/search", search) for _ in range(repeats))
        req = urllib.request.Request(f"{api}/runs/search", json.dumps({**search, "max_results": 10}).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            ids = [x["info"]["run_id"] for x in json.loads(r.read())["runs"]]
        q = "&".join(f"run_ids={i}" for i in ids)
        url = f"{api}/metrics/get-history-bulk-interval?{q}&metric_key=curves/train_loss&max_results=320"
        t_hist = sorted(_get(url)[0] for _ in range(repeats))
    return {"server_sorted_search_s": t_sort[len(t_sort) // 2], "server_history_s": t_hist[len(t_hist) // 2]}


def measure_size(configs: int, root: Path, server: bool = True) -> dict:
    """Sweep ``configs`` configurations into a fresh store under ``root``, read it back every way; delete it."""
    if configs % (LRS * BATCH_SIZES):
        raise ValueError(f"configurations must be a multiple of {LRS * BATCH_SIZES}, not {configs}")
    folder = root / f"scale-{configs}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cli = [sys.executable, "-m", "bpresearch.cli"]
    try:
        sweep = _timed([*cli, "sweep", str(WORKLOAD), "--set", f"sweep.seeds={configs // (LRS * BATCH_SIZES)}",
                        "--tracking-uri", uri], folder)
        rerun = _timed([*cli, "sweep", str(WORKLOAD), "--set", f"sweep.seeds={configs // (LRS * BATCH_SIZES)}",
                        "--tracking-uri", uri], folder)   # everything finished: nothing to train
        points = re.search(r"([\d,]+) metric points logged", sweep["output"])
        tracking = re.search(r"tracking took ([\d.]+)s", sweep["output"])
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        report = _timed([*cli, "report", "scale", "--tracking-uri", uri, "--out", str(folder / "reports")], folder)
        loaded = re.search(r"curve points loaded in ([\d.]+)s", report["output"])
        listed = _timed([*cli, "list", "--tracking-uri", uri], folder)
        row = {"configs": configs, "points": int(points.group(1).replace(",", "")) if points else None,
               "store_mb": size / 1e6, "sweep_s": sweep["seconds"], "sweep_max_rss_mb": sweep["max_rss_mb"],
               "rerun_s": rerun["seconds"],
               "tracking_s": float(tracking.group(1)) if tracking else None,
               "tracking_points_per_s": (int(points.group(1).replace(",", "")) / float(tracking.group(1))
                                         if points and tracking else None),
               "report_s": report["seconds"], "report_max_rss_mb": report["max_rss_mb"],
               "report_curves_s": float(loaded.group(1)) if loaded else None,
               "list_s": listed["seconds"], "list_max_rss_mb": listed["max_rss_mb"]}
        if server:
            row.update(server_reads(uri, folder))
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def exponents(rows: list[dict]) -> list[dict]:
    """The growth exponent of each stage between consecutive sizes: 1 is linear."""
    out = []
    for a, b in zip(rows, rows[1:]):
        e = {"from": a["configs"], "to": b["configs"]}
        for k in STAGES:
            if a.get(k) and b.get(k):
                e[k] = math.log(b[k] / a[k]) / math.log(b["configs"] / a["configs"])
        out.append(e)
    return out


def run(configs=CONFIGS, log=print, server: bool = True) -> dict:
    """Every size in turn; what bench.json holds under ``scale``."""
    mine = not os.environ.get("BENCH_SCALE_DIR")
    root = Path(tempfile.mkdtemp(prefix="bench-scale-") if mine else os.environ["BENCH_SCALE_DIR"])
    rows = []
    try:
        for n in configs:
            log(f"scale: {n:,} configurations …")
            rows.append(measure_size(n, root, server))
            r = rows[-1]
            log(f"  sweep {r['sweep_s']:.1f}s, report {r['report_s']:.1f}s ({r['report_max_rss_mb']:,.0f} MB), "
                f"list {r['list_s']:.1f}s" + (f", sorted search {r['server_sorted_search_s']:.2f}s" if server else ""))
    finally:
        if mine:
            shutil.rmtree(root, ignore_errors=True)
    return {"workload": WORKLOAD.name, "rows": rows, "exponents": exponents(rows)}


def markdown(scale: dict) -> str:
    """The scale section of bench.md: one row per stage, one column per size, then the exponents."""
    rows = scale["rows"]
    head = "| | " + " | ".join(f"{r['configs']:,}" for r in rows) + " | exponents |"
    lines = ["## Scale: " + scale["workload"], "", head, "|---|" + "---:|" * (len(rows) + 1)]
    labels = {"points": "points written", "store_mb": "store (MB)", "sweep_s": "sweep (s)",
              "tracking_s": "sweep's tracking (s)", "tracking_points_per_s": "sweep's write rate (points/s)",
              "sweep_max_rss_mb": "sweep max RSS (MB)", "rerun_s": "rerun, nothing to train (s)",
              "report_s": "report (s)", "report_curves_s": "report's curves (s)",
              "report_max_rss_mb": "report max RSS (MB)", "list_s": "list (s)",
              "server_sorted_search_s": "server sorted search (s)", "server_history_s": "server history, 10 runs (s)"}
    for k, label in labels.items():
        if all(r.get(k) is None for r in rows):
            continue
        ex = ", ".join(f"{e[k]:.2f}" for e in scale["exponents"] if k in e)
        cells = " | ".join("—" if r.get(k) is None else f"{r[k]:,.0f}" if k in ("points", "tracking_points_per_s") else f"{r[k]:,.2f}"
                           for r in rows)
        lines.append(f"| {label} | {cells} | {ex} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="reports/bench", help="output folder (default reports/bench)")
    ap.add_argument("--configs", default=",".join(map(str, CONFIGS)), metavar="N,N,…",
                    help="sizes, multiples of 128 (default %(default)s)")
    args = ap.parse_args(argv)
    from .run import _log, machine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"   # the rest of the bench's, when there is one, gains the section
    res = json.loads(path.read_text()) if path.exists() else {"machine": machine()}
    res["scale"] = run([int(n) for n in args.configs.split(",")], _log)
    path.write_text(json.dumps(res, indent=2, default=str))
    (out / "scale.md").write_text(markdown(res["scale"]))
    print(markdown(res["scale"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
