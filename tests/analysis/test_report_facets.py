"""Reports that hold for any sweep: swept keys as facets, variants kept apart, summary.json.

Two small real sweeps: one that sweeps ``optimizer.kind``, ``model.activation`` and the
batch size together, and one experiment with a base sweep, a sweep that only changes the
grid (same variant) and a ``--set`` variant (its own page). The tables, the page and
``summary.json`` are checked against the runs as MLflow holds them.
"""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from analysis import load
from analysis.report import main as report_main
from bpresearch import keys as R
from bpresearch.cli import main as cli_main
from bpresearch.store import reads as tracking_read

pytestmark = pytest.mark.slow  # 4 small sweeps (10 compiled groups) and their reports

FACETS = """\
name = "facets"
description = "optimizer x activation x batch size"

[data]
source = "teacher"
n_train = 32
n_features = 3
noise = 0.05

[model]
kind = "neuron"
init = "normal"
init_scale = 0.5

[train]
steps = 24
eval_every = 1
targets = [0.05, 0.01]

[sweep]
learning_rate = [0.05, 0.3, 1.5]
batch_size = [4, "full"]
seeds = 2
"optimizer.kind" = ["sgd", "adam"]
"model.activation" = ["identity", "tanh"]
"""

VARIANTS = """\
name = "variants"

[data]
source = "teacher"
n_train = 32
n_features = 3

[model]
kind = "neuron"

[train]
steps = 20
eval_every = 1
targets = [0.05]

[sweep]
learning_rate = [0.1, 0.5]
batch_size = [4, "full"]
seeds = 2
"""


def sweep(path, uri, *sets):
    args = ["sweep", str(path), "--tracking-uri", uri]
    for s in sets:
        args += ["--set", s]
    assert cli_main(args) == 0


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("facets")
    uri = f"sqlite:///{tmp}/mlflow.db"
    (tmp / "facets.toml").write_text(FACETS)
    (tmp / "variants.toml").write_text(VARIANTS)
    sweep(tmp / "facets.toml", uri)
    sweep(tmp / "variants.toml", uri)
    sweep(tmp / "variants.toml", uri, "sweep.seeds=[2]")          # only the grid grows: the same variant
    sweep(tmp / "variants.toml", uri, "data.noise=0.3")            # a variant
    out = tmp / "reports"
    assert report_main(argparse.Namespace(experiments=[], tracking_uri=uri, out=str(out), variant=None)) == 0
    return uri, out


def finished(uri, name) -> pd.DataFrame:
    """The finished child runs straight from MLflow, one row per run."""
    exp = tracking_read.experiment(uri, name)
    rows = []
    for r in tracking_read.runs(uri, exp.experiment_id):
        if r.tags.get(R.KIND_TAG) == R.RUN and r.status == "FINISHED":
            rows.append({**{f"params.{k}": v for k, v in r.params.items()},
                         **{f"metrics.{k}": v for k, v in r.metrics.items()}})
    return pd.DataFrame(rows)


def test_every_cell_of_summary_json_matches_mlflow(reports):
    uri, out = reports
    summary = json.loads((out / "facets" / "summary.json").read_text())
    assert summary["experiment"] == "facets" and len(summary["variants"]) == 1
    v = summary["variants"][0]
    assert v["overrides"] == {} and sorted(v["facets"]) == ["model.activation", "optimizer.kind"]
    runs = finished(uri, "facets")
    assert len(runs) == 3 * 2 * 2 * 2 * 2
    # Every cell is batch size × optimizer × activation; nothing pooled, nothing dropped.
    assert len(v["cells"]) == 2 * 2 * 2
    assert sum(c["runs"] for c in v["cells"]) == len(runs)
    for c in v["cells"]:
        assert c["seeds"] == 2 and c["runs"] == 6
        here = runs[(runs["params.optimizer.kind"] == c["optimizer.kind"])
                    & (runs["params.model.activation"] == c["model.activation"])
                    & (runs["params.batch_size"].astype(int) == c["batch_size"])]
        assert len(here) == c["runs"]
        assert c["runs_diverged"] == int(here[f"metrics.{R.DIVERGED}"].sum())
        for t, e in c["targets"].items():
            assert set(e) >= {"best_learning_rate", "steps_median", "steps_min", "steps_max", "examples_median",
                              "seeds_reached", "seeds"}
            # reached = crossed and did not diverge; ending above the target again still counts (verdicts.counts)
            kept = here[f"metrics.{R.DIVERGED}"] == 0
            s_all = here[f"metrics.{R.steps_key(float(t))}"].where(kept).fillna(np.inf)
            steps = {lr: s_all[g.index].to_numpy()
                     for lr, g in here.groupby(here["params.learning_rate"].astype(float))}
            med = {lr: np.quantile(s, 0.5, method="higher") for lr, s in steps.items()}
            fastest = min(med.values())
            if not np.isfinite(fastest):
                assert e["best_learning_rate"] is None and e["steps_median"] is None and e["seeds_reached"] == 0
                continue
            s = steps[e["best_learning_rate"]]
            assert e["steps_median"] == fastest == med[e["best_learning_rate"]]
            assert e["steps_min"] == s.min()
            assert e["steps_max"] == (s.max() if np.isfinite(s).all() else None)
            assert e["seeds_reached"] == int(np.isfinite(s).sum()) and e["seeds"] == len(s)
            assert e["examples_median"] == fastest * c["batch_size"]


def test_tables_have_a_row_per_facet_value_and_findings_compare_them(reports):
    _, out = reports
    md = (out / "facets" / "report.md").read_text()
    section = md.split("**Best learning rate per model.activation × optimizer.kind × batch size")[1]
    rows = [ln for ln in section.split("\n\n")[1].splitlines()[2:]]
    assert rows[0].startswith("| identity | adam | 4 |")
    assert len(rows) == 8  # 2 activations × 2 optimizers × 2 batch sizes
    cells = {tuple(x.strip() for x in r.strip("|").split("|")[:3]) for r in rows}
    assert cells == {(a, o, b) for a in ("identity", "tanh") for o in ("adam", "sgd") for b in ("4", "full (32)")}
    assert "| model.activation | optimizer.kind | batch size | best learning rate |" in md
    summary = md.split("## What was run")[0]
    answer = summary.split("\n- **η**")[0]                           # the sentences above the glossary
    assert answer.count("\n- ") <= 5 and "![" in summary            # at most five sentences and the figure
    # a finding that compares facet values: a winner only outside the seed spread, else every tied one named
    table = md.split("**Groups compared: median steps to loss 0.05 (best η) per batch size**")[1].split("\n\n")[1]
    verdict = [ln for ln in table.splitlines() if ln.startswith("| fewest steps (beyond the seed spread)")]
    assert len(verdict) == 1 and all(v.strip().startswith(("activation=", "tie (", "—"))
                                     for v in verdict[0].strip("|").split("|")[1:])
    assert "Swept besides learning rate, batch size and seed" in md
    assert ".5 step" not in md and "6.5" not in md


def test_variants_are_kept_apart_and_listed(reports):
    uri, out = reports
    data = load.load_experiment(uri, "variants")
    assert [len(v.runs) for v in data.variants] == [12, 8]   # base (two sweeps: seeds 0, 1 and 2) and the variant
    base, noisy = data.variants
    assert base.base and base.overrides == {} and noisy.overrides == {"data.noise": "0.3"}
    assert sum(len(v.runs) for v in data.variants) == len(finished(uri, "variants"))
    summary = json.loads((out / "variants" / "summary.json").read_text())
    assert [v["overrides"] for v in summary["variants"]] == [{}, {"data.noise": "0.3"}]
    assert [sum(c["runs"] for c in v["cells"]) for v in summary["variants"]] == [12, 8]
    main = (out / "variants" / "index.html").read_text()
    page = out / "variants" / "variants" / noisy.slug / "index.html"
    assert page.exists() and f"variants/{noisy.slug}/index.html" in main
    assert "data.noise=0.3 (8 runs" in (out / "variants" / "details.html").read_text()
    other = page.read_text() + (page.parent / "details.html").read_text()
    assert "data.noise=0.3 — 8 finished runs" in other and "../../index.html" in page.read_text()


def test_report_picks_one_variant(reports, tmp_path, capsys):
    uri, _ = reports
    ns = lambda v: argparse.Namespace(experiments=["variants"], tracking_uri=uri, out=str(tmp_path), variant=v)  # noqa
    assert report_main(ns("data.noise=0.3")) == 0
    summary = json.loads((tmp_path / "variants" / "summary.json").read_text())
    assert [v["overrides"] for v in summary["variants"]] == [{"data.noise": "0.3"}]
    assert "data.noise=0.3 — 8 finished runs" in (tmp_path / "variants" / "details.html").read_text()
    capsys.readouterr()
    assert report_main(ns("data.noise=9")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no variant 'data.noise=9'" in err[0] and "base" in err[0]
