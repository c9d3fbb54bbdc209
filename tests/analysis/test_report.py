"""Reports built from small real sweeps: figures, tables, findings, self-contained HTML."""

import argparse
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from analysis import load
from analysis import measures as M
from analysis.report import main as report_main
from analysis.shapes import run_shapes
from bpresearch import keys as R
from bpresearch.cli import main as cli_main
from bpresearch.store import tracking

ROOT = Path(__file__).resolve().parents[2]
EXP = ROOT / "experiments"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store with four tiny sweeps; reports written once for all of them."""
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp}/mlflow.db"
    # An experiment whose every run diverges: the seed graph with steps far too large.
    diverging = tmp / "all-diverged.toml"
    diverging.write_text((EXP / "seed-graph.toml").read_text().replace('name = "seed-graph"', 'name = "all-diverged"'))
    sweeps = [
        [EXP / "seed-graph.toml", "--set", "train.steps=60", "--set", "sweep.learning_rate=[0.01,0.05,0.1,0.12]"],
        # 1.4 and 1.7 straddle the exact full-batch boundary 2/λ_max = 1.530 of linear.npz.
        [EXP / "linear-regression.toml", "--set", "train.steps=100", "--set", "sweep.seeds=2",
         "--set", "sweep.learning_rate=[0.03,0.056,0.3,1.4,1.7,3.0]", "--set", 'sweep.batch_size=[1,8,"full"]'],
        [EXP / "neuron-random-vs-gd.toml", "--set", "train.steps=30", "--set", "sweep.seeds=2",
         "--set", "sweep.learning_rate=[1.0,10.0]"],
        [diverging, "--set", "train.steps=20", "--set", "sweep.learning_rate=[0.5,1.0]"],
    ]
    for args in sweeps:
        assert cli_main(["sweep", *map(str, args), "--tracking-uri", uri]) == 0
    out = tmp / "reports"
    # through the CLI: it hands the report the seed's worked example (analysis imports no JAX)
    assert cli_main(["report", "--tracking-uri", uri, "--out", str(out)]) == 0
    return uri, out


class Page(HTMLParser):
    """Collects tags and their attributes; fails on what a self-contained page must not hold."""

    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.links, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("href", "src"):
            if k in a and tag != "img":
                self.links.append(a[k])

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def self_contained(page: Page):
    assert "script" not in page.tags and "link" not in page.tags
    assert page.imgs and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert not any(re.match(r"(https?:|//|file:)", x) for x in page.links)


def test_index_links_every_report(store):
    _, out = store
    page = parse(out / "index.html")
    assert sorted(page.links) == sorted(f"{n}/index.html" for n in
                                        ("all-diverged", "linear-regression", "neuron-random-vs-gd", "seed-graph"))
    for link in page.links:
        assert (out / link).exists()


@pytest.mark.parametrize("name, figures, phrases", [
    ("seed-graph", ["seed_graph", "seed_graph_curves", "edge_of_stability"],
     ["The post's η = 0.1 does not converge", "at machine precision", "ratios against it are meaningless",
      "converged (loss < 1e-06)", "diverged (at step",
      "2/λ_max at initialisation = 0.0461", "below the bracket", "Predicted vs measured",
      "The post's worked update (η = 0.1, Target = -10): loss 2, loss gradients 8, 8, -6 (x, y, z), new values "
      "-2.8, 4.2, -3.4; repeated, the loss goes 2 → 13.7 → 55.3 → 17.7 → …: η = 0.1 does not converge",
      "the sweep's best is η = 0.01: loss below 1e-06 in 16 steps",
      "The smallest learning rate, η = 0.01, was also the fastest to loss 1e-06 (16 steps)",
      "logged as a metric history (param/x, param/y, param/z)"]),
    ("linear-regression", ["loss_curves", "heatmap_0.06", "scaling_0.06", "sensitivity", "batch_vs_stochastic",
                           "edge_of_stability"],
     ["Best learning rate per batch size", "the best learning rate was", "Scaling to loss 0.06: intervals over seeds",
      "trajectory noise (the full training loss", "minibatch-loss noise", "Outcomes of all runs",
      "Predicted vs measured", "the prediction is inside the bracket", "the sharpness was constant (within ±10%)",
      "for at least 3 consecutive measurements", "Critical batch size for loss 0.06:",
      "Path average of B_simple = tr(Σ)/|G|²", "McCandlish"]),
    ("neuron-random-vs-gd", ["loss_curves_sgd", "random_vs_gd"],   # two learning rates: no sensitivity plot
     ["After 30 loss evaluations, random search", "gradient descent with η=10",
      "Nothing is predicted: no diagnostics were logged",
      "Too small takes very long: the smallest learning rate, η = 1, "]),
])
def test_report_holds_its_figures_tables_and_findings(store, name, figures, phrases):
    _, out = store
    folder = out / name
    page = parse(folder / "index.html")
    self_contained(page)
    assert len(page.imgs) == len(figures)
    text = " ".join(page.text + parse(folder / "details.html").text)   # the main page and its details
    for phrase in phrases + ["What was run", "Resolved configuration", "git commit"]:
        assert phrase in text, phrase
    md = (folder / "report.md").read_text()
    for f in figures:
        assert (folder / f"{f}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({f}.png)" in md
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(figures)


def test_figures_that_do_not_apply_say_why(store):
    _, out = store
    text = " ".join(parse(out / "neuron-random-vs-gd" / "details.html").text)
    assert "Not shown: needs runs with batch size 1 and with the full batch." in text or \
        "Batch versus stochastic" not in text
    assert "Steps and examples" not in text  # one batch size: no scaling plot at all


def test_all_diverged_experiment_still_builds_and_says_so(store):
    _, out = store
    page = parse(out / "all-diverged" / "index.html")
    text = " ".join(page.text + parse(out / "all-diverged" / "details.html").text)
    assert "Every one of the 2 runs diverged" in text
    assert "η = 0.5, 1 diverged" in text


def test_report_is_attached_to_the_latest_sweep(store):
    uri, _ = store
    data = load.load_experiment(uri, "seed-graph")
    files = {f.path for f in tracking.client(uri).list_artifacts(data.latest_sweep["run_id"], "report")}
    assert {"report/index.html", "report/details.html", "report/report.md", "report/seed_graph.png"} <= files


def test_logged_steps_to_target_agree_with_the_curves(store):
    uri, _ = store
    data = load.load_experiment(uri, "linear-regression")
    curves = load.load_curves(uri, data.runs["run_id"])
    targets = M.targets_of(data.runs)
    a = M.steps_to_target(curves, data.runs, targets)
    b = M.steps_to_target_logged(data.runs, targets, run_shapes(curves, data.runs))  # how each run ended: its curve
    assert len(a) == len(data.runs) == 36
    assert np.array_equal(a["steps"].fillna(-1), b["steps"].fillna(-1))
    used = M.steps_to_targets(data.runs, curves, targets)  # what the report uses: the summaries, checked
    assert not used.from_curves and used.disagree == 0 and used.table.equals(b)
    assert M.steps_to_targets(data.runs.drop(columns=[f"metrics.{R.reached_key(t)}" for t in targets]), curves,
                              targets).table.equals(a)
    # The client API (any store) reads the same points as the direct sqlite query.
    some = data.runs["run_id"].iloc[:2]
    via_client = load.load_curves(uri, some, ["train_loss"], sql=False)
    direct = load.load_curves(uri, some, ["train_loss"])
    assert len(direct) > 100 and via_client.equals(direct)


def run_report(capsys, *experiments, uri):
    code = report_main(argparse.Namespace(experiments=list(experiments), tracking_uri=uri, out="unused", variant=None))
    return code, capsys.readouterr().err.strip().splitlines()


def test_unknown_experiment_is_one_line_and_exit_2(store, capsys):
    uri, _ = store
    code, err = run_report(capsys, "no-such-experiment", uri=uri)
    assert code == 2 and len(err) == 1
    assert "no-such-experiment" in err[0] and uri in err[0] and "seed-graph" in err[0]


def test_missing_store_is_one_line_and_exit_2(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/none.db"
    code, err = run_report(capsys, uri=uri)
    assert code == 2 and len(err) == 1 and uri in err[0]
    assert not (tmp_path / "none.db").exists()  # a report never creates a store


def test_unfinished_runs_are_counted_but_not_analysed(store):
    uri, _ = store
    before = load.load_experiment(uri, "all-diverged")
    c = tracking.client(uri)
    parent = before.latest_sweep["run_id"]
    c.create_run(before.experiment_id, run_name="lr=0.5 bs=full seed=0",
                 tags={"mlflow.parentRunId": parent, "bpresearch.kind": "run"})  # left RUNNING, as by a kill
    after = load.load_experiment(uri, "all-diverged")
    assert len(after.runs) == len(before.runs) == 2
    assert after.unfinished == {"RUNNING": 1}


def test_experiment_without_finished_runs_says_so(store, tmp_path, capsys):
    uri, _ = store
    c = tracking.client(uri)
    exp_id = c.create_experiment("only-unfinished")
    c.create_run(exp_id, run_name="lr=0.1 bs=1 seed=0", tags={"bpresearch.kind": "run"})
    assert "only-unfinished" not in load.experiment_names(uri)  # not among the defaults
    code = report_main(argparse.Namespace(experiments=["only-unfinished"], tracking_uri=uri, out=str(tmp_path),
                                          variant=None))
    assert code == 0
    text = " ".join(parse(tmp_path / "only-unfinished" / "index.html").text)
    assert "no FINISHED runs" in text and "1 RUNNING" in text


def test_runs_without_curves_still_build_and_say_so(store):
    from analysis.build import build
    from analysis.render import Figure, to_html

    uri, _ = store
    data = load.load_experiment(uri, "linear-regression")
    rep = build(data, load.load_curves(uri, []))
    reasons = {f.name: f.reason for f in rep.figures if f.png is None}
    assert "no full_train_loss curves" in reasons["loss_curves"]
    assert all(isinstance(f, Figure) for f in rep.figures) and "heatmap_0.06" not in reasons  # from summaries
    assert "No curves (metric histories) were found" in to_html(rep)


def test_without_the_run_side_the_seed_graph_says_why_its_figure_is_missing(store):
    from analysis.build import build

    uri, _ = store
    data = load.load_experiment(uri, "seed-graph")
    rep = build(data, load.load_curves(uri, data.runs["run_id"]))  # no RunSide: built as analysis alone
    reasons = {f.name: f.reason for f in rep.figures if f.png is None}
    assert "computed by the run side" in reasons["seed_graph"]
    assert "seed_graph_curves" not in reasons  # drawn from the logged curves alone


def test_linear_regression_prediction_is_exact_and_inside_the_measured_bracket(store):
    """Least squares has the constant Hessian XᵀX/N: 2/λ_max is the exact full-batch boundary."""
    from analysis.figures import scaling as FG
    from analysis.predictions import predict

    uri, out = store
    data = load.load_experiment(uri, "linear-regression")
    curves = load.load_curves(uri, data.runs["run_id"], R.CURVE_KEYS + R.DIAGNOSTIC_KEYS)
    X = np.load(EXP / "linear.npz")["X"]
    exact = 2 / np.linalg.eigvalsh(X.T @ X / len(X)).max()
    table = M.steps_to_target_logged(data.runs, [0.06])
    cell = M.cells(table)
    bests = {0.06: M.best_learning_rate(cell, 0.06)}
    pred = predict(data.runs, curves, table, bests, 256)
    assert pred.init["stability_lr"] == pytest.approx(exact, rel=1e-3) and round(exact, 3) == 1.530
    full = pred.cmp.set_index("batch_size").loc[256]
    assert (full["highest_stable"], full["lowest_diverged"], full["position"]) == (1.4, 1.7, "inside")
    # The lines in the figures: the prediction on the learning-rate axes, the batch sizes on the scaling plot.
    heat = FG.steps_heatmap(cell, 0.06, 256, pred.lr_mark)
    rows = sorted(cell["learning_rate"].unique())  # 1.53 lies between the rows of 1.4 and 1.7
    y = [ln.get_ydata()[0] for ln in heat.axes[0].lines]
    assert len(y) == 1 and rows.index(1.4) < y[0] < rows.index(1.7)
    sens = FG.sensitivity(M.lr_sensitivity(data.runs), 256, pred.lr_mark, pred.bracket(256))
    labels = sens.axes[0].get_legend_handles_labels()[1]
    assert "2/λ_max(0) = 1.53" in labels and "measured boundary, full batch: (1.4, 1.7]" in labels
    scal = FG.scaling(M.scaling_curve(bests[0.06]), 0.06, 256, 1, pred.marks(0.06))
    labels = " ".join(scal.axes[0].get_legend_handles_labels()[1])
    assert "perfect scaling" in labels
    untuned = ~bests[0.06]["tuned"].astype(bool) & bests[0.06]["reached"]
    assert ("not tuned: optimum at the grid's edge" in labels) == bool(untuned.any())
    md = (out / "linear-regression" / "report.md").read_text()
    assert "| divergence boundary, full batch (256) | 2/λ_max(0) = 1.53 | in (1.4, 1.7]" in md
    assert "](edge_of_stability.png)" in md


# ---------------------------------------------------------------- the answer first, details folded
class Visible(HTMLParser):
    """Words outside ``<details>`` (and all words), the text of each ``<li>``, the rows of the recommendation table."""

    def __init__(self):
        super().__init__()
        self.depth, self.skip, self.words, self.items, self.rows = 0, 0, [], [], []
        self.all_words = []
        self._li, self._table, self._row = None, False, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.depth += tag == "details"
        self.skip += tag == "style"
        if tag == "li":
            self._li = []
        if tag == "table" and a.get("id") == "recommendations":
            self._table = True
        if tag == "tr" and self._table:
            self._row = []

    def handle_endtag(self, tag):
        self.depth -= tag == "details"
        self.skip -= tag == "style"
        if tag == "li" and self._li is not None:
            self.items.append(" ".join(self._li).strip())
            self._li = None
        if tag == "table":
            self._table = False
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self.skip:
            return
        self.all_words += data.split()
        if not self.depth:
            self.words += data.split()
        if self._li is not None:
            self._li.append(data.strip())
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def visible(path: Path) -> Visible:
    v = Visible()
    v.feed(path.read_text(encoding="utf-8"))
    return v


@pytest.mark.parametrize("name", ["linear-regression", "neuron-random-vs-gd"])   # one target; two targets
def test_the_answer_table_is_summary_json_for_every_target(store, name):
    """Every target × batch size gets a row; the row holds the cell's best η, steps and seeds of summary.json."""
    import json

    _, out = store
    summary = json.loads((out / name / "summary.json").read_text())
    v = summary["variants"][0]
    recs = v["recommendations"]
    cells = {c["batch_size"]: c for c in v["cells"] if c.get("optimizer.kind", "") != "random_search"}
    targets = list(next(iter(cells.values()))["targets"])
    assert len(targets) == (2 if name == "neuron-random-vs-gd" else 1)
    assert [(r["target"], r["batch_size"]) for r in recs] == [(t, b) for t in targets for b in sorted(cells)]
    for r in recs:
        e = cells[r["batch_size"]]["targets"][r["target"]]
        assert (r["best_learning_rate"], r["steps"], r["seeds_reached"], r["seeds"]) == \
            (e["best_learning_rate"], e["steps_median"], e["seeds_reached"], e["seeds"])
        if r["reached"] and r["tuned"]:
            lo, hi = r["bracket"]
            assert lo < r["best_learning_rate"] < hi
    page = visible(out / name / "index.html")
    body = page.rows[1:]  # the header first
    assert len(body) == len(recs)
    for r, row in zip(recs, body):
        assert (f"{r['best_learning_rate']:.3g}" if r["reached"] else "not reached") in row
    assert 1 <= len(v["answer"]) <= 5 and all(s in " ".join(page.items) for s in v["answer"])


def test_the_first_page_is_short_and_its_bullets_are_too(store):
    _, out = store
    for name in ("linear-regression", "seed-graph", "neuron-random-vs-gd"):
        page = visible(out / name / "index.html")
        assert len(page.all_words) < 1500, name   # folds included: the long details are on details.html
        assert max(len(x) for x in page.items) <= 330, max(page.items, key=len)
        html = (out / name / "index.html").read_text()
        assert html.count("<details") >= 1 and "href='details.html'" in html and ">nan<" not in html


def test_the_index_lists_reports_the_last_command_did_not_write(store, tmp_path):
    _, out = store
    import shutil

    shutil.copytree(out / "seed-graph", tmp_path / "seed-graph")
    code = cli_main(["report", "all-diverged", "--tracking-uri", store[0], "--out", str(tmp_path)])
    assert code == 0
    page = parse(tmp_path / "index.html")
    assert sorted(page.links) == ["all-diverged/index.html", "seed-graph/index.html"]


def test_the_scaling_rule_is_in_summary_json_and_the_report(store):
    """Three tuned batch sizes of linear regression: α with its interval, in summary.json and on the page."""
    import json

    _, out = store
    v = json.loads((out / "linear-regression" / "summary.json").read_text())["variants"][0]
    (rule,) = v["scaling_rule"]
    assert rule["target"] == "0.06" and rule["batch_sizes"] == [1, 8, 256]
    lo, hi = rule["interval"]
    assert lo <= rule["alpha"] <= hi and rule["coverage"] == 0.9
    assert rule["linear_inside"] == (lo <= 1 <= hi) and rule["square_root_inside"] == (lo <= 0.5 <= hi)
    assert v["placement"] is None   # the grid was written out, not placed by "auto"
    text = " ".join(visible(out / "linear-regression" / "details.html").items)   # the findings' page
    assert f"η* ∝ B^α with α = {rule['alpha']:.2f} ({lo:.2f}–{hi:.2f}" in text
