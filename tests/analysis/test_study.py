"""``Study``, the notebook API: the frames of a real sweep, the report's numbers, no JAX.

One small sweep of the documented linear example (3 learning rates × 3 batch sizes × 2
seeds) and its report (``bpresearch report``: ``summary.json``) are made once; every test
reads them.
"""

import json
import shutil
import sqlite3
import subprocess
import sys

import nbformat
import pandas as pd
import pytest
from conftest import EXPERIMENTS, LINEAR_EXAMPLE, ROOT
from nbclient import NotebookClient
from storeview import mlflow_server

from analysis.summary import frame_of
from bpresearch import keys as R
from bpresearch.cli import main

LRS, BATCHES, SEEDS, STEPS = [0.1, 0.3, 0.6], [4, 16, "full"], 2, 60
NAME = "linear-regression"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(tracking URI, summary.json as written by ``bpresearch report``, folder)."""
    tmp = tmp_path_factory.mktemp("study")
    shutil.copy(EXPERIMENTS / "linear.npz", tmp / "linear.npz")
    (tmp / "linear-regression.toml").write_text(LINEAR_EXAMPLE)
    uri = f"sqlite:///{tmp}/mlflow.db"
    sets = [f"train.steps={STEPS}", f"sweep.seeds={SEEDS}", f"sweep.learning_rate={LRS}",
            f"sweep.batch_size={json.dumps(BATCHES)}"]
    assert main(["sweep", str(tmp / "linear-regression.toml"), "--tracking-uri", uri,
                 *[a for s in sets for a in ("--set", s)]]) == 0
    assert main(["report", NAME, "--tracking-uri", uri, "--out", str(tmp / "reports")]) == 0
    summary = json.loads((tmp / "reports" / NAME / "summary.json").read_text())
    return uri, summary, tmp


def study(uri):
    from bpresearch import Study

    return Study(NAME, tracking_uri=uri)


def test_import_bpresearch_and_study_loads_no_jax():
    code = ("import sys, bpresearch; bpresearch.Study; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'jaxlib', 'optax'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_summary_equals_summary_json_cell_for_cell(swept):
    uri, summary, _ = swept
    s = study(uri)
    got, want = s.summary(), frame_of(summary)
    assert len(got) == len(BATCHES) * len(summary["variants"][0]["cells"][0]["targets"])
    pd.testing.assert_frame_equal(got, want)
    mine = s.summary_json()["variants"][0]
    for part in ("cells", "fits", "predictions"):
        assert mine[part] == summary["variants"][0][part], part


def test_summary_of_one_target(swept):
    uri, _, _ = swept
    t = R.target_key(0.06)
    one = study(uri).summary(target=0.06)
    assert set(one["target"]) == {t} and len(one) == len(BATCHES)
    assert one.equals(study(uri).summary(target="0.06"))


def test_runs_has_one_row_per_child_run_with_its_settings(swept):
    uri, _, _ = swept
    runs = study(uri).runs()
    assert len(runs) == len(LRS) * len(BATCHES) * SEEDS and runs["run_id"].is_unique
    assert set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["learning_rate"].unique()) == LRS
    assert set(runs["seed"]) == set(range(SEEDS))
    assert runs.groupby("batch_size").size().tolist() == [len(LRS) * SEEDS] * len(BATCHES)
    assert runs.loc[runs["full_batch"], "batch_size"].nunique() == 1
    assert {"final_full_train_loss", "diverged", "config_hash"} <= set(runs.columns)
    assert not any(c.startswith(("metrics.", "params.")) for c in runs.columns)


def test_runs_lists_an_unfinished_child_run(swept, tmp_path):
    uri, _, folder = swept
    shutil.copy(folder / "mlflow.db", tmp_path / "mlflow.db")
    copy = f"sqlite:///{tmp_path}/mlflow.db"
    with sqlite3.connect(tmp_path / "mlflow.db") as con:   # one child run planted as FAILED
        rid = con.execute("SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                          "WHERE t.key = ? AND t.value = ? ORDER BY r.run_uuid LIMIT 1",
                          (R.KIND_TAG, R.RUN)).fetchone()[0]
        con.execute("UPDATE runs SET status = 'FAILED' WHERE run_uuid = ?", (rid,))
    s = study(copy)
    runs = s.runs()
    assert len(runs) == len(LRS) * len(BATCHES) * SEEDS and len(s.runs(finished=True)) == len(runs) - 1
    failed = runs.set_index("run_id").loc[rid]
    assert failed["status"] == "FAILED" and failed["variant"] == "" and failed["learning_rate"] in LRS


def test_curves_are_the_logged_points_with_each_runs_settings(swept):
    uri, _, folder = swept
    s = study(uri)
    c = s.curves()
    runs = s.runs().set_index("run_id")
    assert c["run_id"].nunique() == len(runs)
    with sqlite3.connect(folder / "mlflow.db") as con:
        n = con.execute("SELECT count(*) FROM metrics WHERE key = ?",
                        (R.stored_key(R.FULL_TRAIN_LOSS),)).fetchone()[0]
    assert len(c) == n
    for col in ("learning_rate", "batch_size", "seed"):
        assert (c[col].to_numpy() == runs.loc[c["run_id"], col].to_numpy()).all()
    first = c[c["step"] == 0].groupby("run_id")["value"].first()
    assert first.nunique() == 1, "every run starts from w = 0: one loss at step 0"
    grad = s.curves(R.GRAD_NORM)
    assert len(grad) and not grad["value"].equals(c["value"])


def test_works_on_a_server(swept, tmp_path):
    uri, summary, folder = swept
    shutil.copy(folder / "mlflow.db", tmp_path / "server.db")
    with mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path) as url:
        s = study(url)
        pd.testing.assert_frame_equal(s.summary(), frame_of(summary))
        assert len(s.curves()) == len(study(uri).curves())


def test_an_unknown_experiment_suggests_the_known_one(swept):
    from bpresearch import Study
    from bpresearch.store.reads import StoreError

    with pytest.raises(StoreError, match=r"no experiment 'linear-regresion'.*did you mean 'linear-regression'"):
        Study("linear-regresion", tracking_uri=swept[0])


def test_the_example_notebook_runs_on_a_sweep(swept):
    """examples/convergence.ipynb, executed against the small sweep: it draws both figures,
    and its table of reached cells holds summary.json's steps."""
    uri, summary, _ = swept
    nb = nbformat.read(ROOT / "examples" / "convergence.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = f"EXPERIMENT = {NAME!r}\nTRACKING_URI = {uri!r}"
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\nprint(json.dumps(reached[['batch_size', 'target', 'steps_median']].to_dict('records')))"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
    got = json.loads(nb.cells[-1].outputs[0]["text"])
    want = [{"batch_size": c["batch_size"], "target": t, "steps_median": e["steps_median"]}
            for c in summary["variants"][0]["cells"] for t, e in c["targets"].items() if e["steps_median"] is not None]
    assert got and sorted(got, key=str) == sorted(want, key=str)


def test_report_writes_what_bpresearch_report_writes(swept, tmp_path):
    uri, summary, _ = swept
    index = study(uri).report(tmp_path / "out")
    assert index == tmp_path / "out" / NAME / "index.html" and index.is_file()
    again = json.loads((index.parent / "summary.json").read_text())
    assert again["variants"] == summary["variants"]


# ---------------------------------------------------------------- targets are questions, not training settings
ASKED = 0.2   # not a target of the sweep (it had 0.06)


def test_a_new_target_trains_nothing(swept, capsys):
    _, _, folder = swept
    sets = [f"train.steps={STEPS}", f"sweep.seeds={SEEDS}", f"sweep.learning_rate={LRS}",
            f"sweep.batch_size={json.dumps(BATCHES)}", f"train.targets=[0.06, {ASKED}]"]
    capsys.readouterr()
    assert main(["sweep", str(folder / "linear-regression.toml"), "--tracking-uri", swept[0], "--dry-run",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    n = len(LRS) * len(BATCHES) * SEEDS
    assert f"already finished in the store: {n} of {n}; a sweep would train 0" in out
    assert f"new target(s) {ASKED:g}" in out


def test_the_curve_gives_the_sweeps_count_for_its_own_target(swept):
    """Evaluated at every step, the logged curve answers a target exactly as the compiled program counted it."""
    from analysis import crossings as C
    from analysis import load

    uri = swept[0]
    runs = load.load_experiment(uri, NAME).runs
    first, above, missing = C.logged_crossings(runs, [0.06])
    c_first, c_above = C.curve_crossings(load.load_curves(uri, runs["run_id"]), [0.06])
    assert not missing and first and (first, above) == (c_first, c_above)


@pytest.mark.slow
def test_the_report_answers_a_new_target_from_the_curve_and_says_so(swept, tmp_path, capsys):
    uri, summary, _ = swept
    assert main(["report", NAME, "--tracking-uri", uri, "--out", str(tmp_path), "--targets", f"0.06,{ASKED}"]) == 0
    asked = json.loads((tmp_path / NAME / "summary.json").read_text())["variants"][0]
    for mine, was in zip(asked["cells"], summary["variants"][0]["cells"]):
        assert mine["targets"]["0.06"] == was["targets"]["0.06"] and mine["targets"]["0.06"]["steps_from"] == "sweep"
        assert mine["targets"][R.target_key(ASKED)]["steps_from"] == "curve"
    assert any(c["targets"][R.target_key(ASKED)]["steps_interval"] for c in asked["cells"])
    md = (tmp_path / NAME / "report.md").read_text()
    assert f"| {ASKED:g} (from the logged curve) |" in md and "not a target when these runs trained" in md
    frame = study(uri).summary(target=ASKED)   # the same numbers without writing a report
    assert set(frame["steps_from"]) == {"curve"}
    assert frame["steps_median"].tolist() == [c["targets"][R.target_key(ASKED)]["steps_median"] for c in asked["cells"]]
    capsys.readouterr()
    assert main(["report", NAME, "--tracking-uri", uri, "--out", str(tmp_path), "--targets", "0.1,x"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "bpresearch: error: report: --targets: expected positive loss values separated by commas, such as "
        "0.3,0.05; got 'x'"]


def test_a_target_the_refining_sweep_did_not_refine_is_said_in_one_line():
    from analysis import load
    from analysis.report import unrefined

    refining = load.Variant("base", {}, {}, [], pd.DataFrame(), pd.DataFrame(),
                            resolved={"train": {"targets": [0.5, 0.2]}, "sweep": {"refine": {"target": [0.5]}}})
    assert unrefined(refining, [0.5]) is None
    assert unrefined(refining, [0.5, 0.05]).startswith("loss 0.05 was not refined (the sweep refined the learning "
                                                       "rate for 0.5;")
