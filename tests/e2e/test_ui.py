"""The MLflow UI as a researcher meets it, in a real headless Chromium.

A small sweep goes into a temp sqlite store; ``mlflow server`` serves it on 127.0.0.1 on a
free port; Debian's Chromium, driven by Playwright, opens the link ``make ui`` prints and
checks what a person sees: the run table (not the GenAI overview), child runs by name, a
filter on a swept param, the run page's loss chart and the dataset input. Each check saves
a screenshot when it fails (and always, with ``BPRESEARCH_UI_SHOTS=DIR``).

Nothing is downloaded: the browser is the system's (``apt-get install chromium``; `.ci/run`
installs it). Without it the tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from storeview import children, free_port  # noqa: E402

from bpresearch.cli import main
from bpresearch.store.tracking import runs_url
from bpresearch.store.views import STEPS_TO_TARGET as STEPS
from bpresearch.store.views import VIEW_NAME, compare_url, run_url

pytestmark = [pytest.mark.ui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless and offline: no GPU, no sandbox (root in CI), no background fetches, a fresh profile.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
GRID = ["--set", "train.steps=20", "--set", "train.eval_every=5", "--set", "sweep.seeds=2",
        "--set", "sweep.learning_rate=[0.03, 0.3]", "--set", 'sweep.batch_size=[8, "full"]']
WAIT_MS = 30_000  # the UI's first load compiles nothing but fetches a few MB of JS


def _need_browser():
    reason = None
    if CHROMIUM is None:
        reason = "no chromium on PATH (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed (make install)"
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    if reason:
        pytest.skip(reason)


@contextmanager
def mlflow_server(uri: str, folder: Path):
    """``mlflow server`` on a free port of 127.0.0.1; stopped through its PID (its process group)."""
    port = free_port()
    log = open(folder / "server.log", "w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow server exited ({proc.returncode}): {(folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mlflow server did not answer /health within 120 s")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(page, base URL, experiment id, client, screenshot folder) over a served small sweep."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("ui")
    shutil.copy(ROOT / "experiments" / "linear.npz", tmp)
    shutil.copy(ROOT / "experiments" / "linear-regression.toml", tmp)
    uri = f"sqlite:///{tmp}/mlflow.db"
    assert main(["sweep", str(tmp / "linear-regression.toml"), "--tracking-uri", uri, *GRID]) == 0
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("linear-regression").experiment_id
    shots = Path(os.environ.get("BPRESEARCH_UI_SHOTS") or tmp / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with mlflow_server(uri, tmp) as base, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp / "profile"), executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000})
        ctx.set_default_timeout(WAIT_MS)
        page = ctx.new_page()
        try:
            yield page, base, exp_id, client, shots
        finally:
            ctx.close()


@contextmanager
def shot(page, shots: Path, name: str):
    """Screenshot ``name`` when the block fails (always with BPRESEARCH_UI_SHOTS set)."""
    try:
        yield
    except BaseException:
        page.screenshot(path=str(shots / f"{name}-FAILED.png"), full_page=True)
        print(f"screenshot: {shots / f'{name}-FAILED.png'}", file=sys.stderr)
        raise
    if os.environ.get("BPRESEARCH_UI_SHOTS"):
        page.screenshot(path=str(shots / f"{name}.png"))


def test_experiment_opens_on_the_run_table_with_child_runs(ui):
    page, base, exp_id, client, shots = ui
    kids = children(client, exp_id)
    with shot(page, shots, "experiment"):
        page.goto(runs_url(base, exp_id))  # the link `make ui` prints
        page.get_by_role("columnheader", name="Run Name").first.wait_for()
        for k in kids:  # every child run, without expanding its parent
            page.get_by_role("link", name=k.info.run_name, exact=True).wait_for()
        body = page.inner_text("body")
        assert "No data available" not in body and "Latency" not in body, "the GenAI overview opened"
        assert f"{len(kids)} matching runs" in body   # the view lists the child runs, not the sweeps
        assert VIEW_NAME in body                      # the view is open, under its name


def _fastest(kids) -> set[str]:
    steps = {k.info.run_name: k.data.metrics.get(STEPS) for k in kids}
    best = min(v for v in steps.values() if v is not None)
    return {name for name, v in steps.items() if v == best}


def test_the_link_shows_the_answer_columns_and_a_fastest_run_first(ui):
    """Learning rate, batch size, seed, steps to the first target and diverged are columns of
    the table (not behind "Show more columns"); the first run listed reached the target first."""
    page, base, exp_id, client, shots = ui
    kids = children(client, exp_id)
    with shot(page, shots, "answer"):
        page.goto(runs_url(base, exp_id))
        names = [k.info.run_name for k in kids]
        for n in names:
            page.get_by_role("link", name=n, exact=True).wait_for()
        header = page.locator(".ag-header").first.inner_text()
        for column in ("learning_rate", "batch_size", "seed", STEPS, "summary/diverged"):
            assert column in header, f"{column} is not a column of the table: {header!r}"
        # the run links top to bottom, as drawn (a group's heading row carries no run link)
        tops = sorted((page.get_by_role("link", name=n, exact=True).bounding_box()["y"], n) for n in names)
        assert tops[0][1] in _fastest(kids), (tops, _fastest(kids))


def _plots(page) -> list[dict]:
    """Each drawn chart: its y-axis type and its traces (mode, fill), from Plotly's own state."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
        y: gd._fullLayout.yaxis.type, traces: gd.data.map(t => [t.mode || '', t.fill || ''])}))""")


def test_the_loss_curves_are_log_scaled_one_line_per_batch_size(ui):
    page, base, exp_id, client, shots = ui
    kids = children(client, exp_id)
    sizes = {k.data.params["batch_size"] for k in kids}
    assert len(sizes) > 1 and len(kids) > len(sizes)
    with shot(page, shots, "charts"):
        page.goto(runs_url(base, exp_id))
        page.get_by_role("link", name=kids[0].info.run_name, exact=True).wait_for()
        page.locator("label:has(input[value=CHART])").click()   # the chart view of the same view
        page.locator(".js-plotly-plot").first.wait_for()
        tops = [page.get_by_text(s, exact=True).first.bounding_box()["y"] for s in ("curves", "diagnostics")]
        assert tops == sorted(tops), tops
        first = _plots(page)[0]   # curves/full_train_loss
        assert first["y"] == "log"
        lines = [t for t in first["traces"] if t[0] == "lines+markers"]
        bands = [t for t in first["traces"] if t[1]]   # the min–max band of each group
        assert len(lines) == len(bands) == len(sizes), first


GENAI_NAV = ("Evaluations", "Judges", "Prompts", "Evaluation runs")


def _open_run_page(page, name: str) -> str:
    """The run page's text once its heading and tabs are drawn."""
    page.get_by_role("heading", name=name).wait_for()
    page.get_by_role("tab").first.wait_for()
    return page.inner_text("body")


def test_the_links_bpresearch_writes_open_runs_in_model_training_mode(ui):
    """A browser that never chose a mode (MLflow's default is GenAI): a run's link and the compare
    link of a cell's seeds, as a report with ``--ui-url`` writes them, open in Model training mode."""
    page, base, exp_id, client, shots = ui
    kids = children(client, exp_id)
    cell = [k for k in kids if (k.data.params["batch_size"], k.data.params["learning_rate"]) ==
            (kids[0].data.params["batch_size"], kids[0].data.params["learning_rate"])]
    assert len(cell) == 2   # the two seeds of one cell
    with shot(page, shots, "run-link"):
        page.goto(base)
        page.evaluate("localStorage.clear()")   # no mode chosen in this browser
        page.goto(run_url(base, exp_id, kids[0].info.run_id))
        text = _open_run_page(page, kids[0].info.run_name)
        page.get_by_role("tab", name="Model metrics").wait_for()
        for genai in GENAI_NAV:
            assert genai not in text, f"GenAI navigation on the run page: {genai}"
    with shot(page, shots, "cell-link"):
        page.goto(compare_url(base, exp_id, [k.info.run_id for k in cell]))
        page.get_by_text("Comparing 2 Runs").wait_for()
        text = page.inner_text("body")
        assert all(k.info.run_name in text for k in cell)
        assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") is None   # the link alone did it


def test_a_child_run_opened_from_the_table_needs_model_training_chosen_once(ui):
    """MLflow 3.17 (and 3.18) keeps a run page's mode in the browser: the table's links into runs
    drop the link's workflowType, and no tag of the store decides it. A browser that never chose
    opens such a run in GenAI mode (what docs/reports.md says); after the one choice of *Model
    training* every run opened from the table shows the training pages. Should MLflow start
    carrying the mode into runs, the first half fails: then the docs' caveat can go."""
    page, base, exp_id, client, shots = ui
    kid = children(client, exp_id)[0]
    with shot(page, shots, "run-from-table"):
        page.goto(runs_url(base, exp_id))
        page.evaluate("localStorage.clear()")
        page.goto(runs_url(base, exp_id))
        page.get_by_role("link", name=kid.info.run_name, exact=True).click()
        text = _open_run_page(page, kid.info.run_name)
        assert "Evaluations" in text, "a run opened from the table kept Model training mode: update docs/reports.md"
        page.get_by_text("Model training", exact=True).first.click()
        page.goto(runs_url(base, exp_id))
        page.get_by_role("link", name=kid.info.run_name, exact=True).click()
        page.get_by_role("tab", name="Model metrics").wait_for()
        text = _open_run_page(page, kid.info.run_name)
        for genai in GENAI_NAV:
            assert genai not in text, f"GenAI navigation on the run page: {genai}"


def test_a_filter_on_a_swept_param_finds_child_runs(ui):
    page, base, exp_id, client, shots = ui
    kids = children(client, exp_id)
    want = sorted(k.info.run_name for k in kids if k.data.params["batch_size"] == "8")
    other = sorted(k.info.run_name for k in kids if k.data.params["batch_size"] != "8")
    assert want and other
    with shot(page, shots, "filtered"):
        page.goto(runs_url(base, exp_id))  # the link `make ui` prints
        box = page.get_by_placeholder("metrics.rmse", exact=False)
        box.fill('params.batch_size = "8"')
        box.press("Enter")
        page.get_by_text(f"{len(want)} matching runs").wait_for()
        for name in want:
            page.get_by_role("link", name=name, exact=True).wait_for()
        for name in other:
            assert page.get_by_role("link", name=name, exact=True).count() == 0, name


def test_the_run_page_shows_the_loss_chart_first_and_the_dataset(ui):
    page, base, exp_id, client, shots = ui
    kid = children(client, exp_id)[0]
    ds = client.get_run(kid.info.run_id).inputs.dataset_inputs[0].dataset
    with shot(page, shots, "run-page"):
        page.goto(f"{base}/#/experiments/{exp_id}/runs/{kid.info.run_id}?workflowType=machine_learning")
        page.get_by_role("heading", name=kid.info.run_name).wait_for()
        page.get_by_text(f"{ds.name} ({ds.digest})").first.wait_for()   # Datasets: "linear.npz (6825…)"
        page.get_by_text(Path(kid.data.tags["mlflow.source.name"]).name).first.wait_for()   # Source
    with shot(page, shots, "run-charts"):
        page.get_by_role("tab", name="Model metrics").click()
        title = page.get_by_text("full_train_loss", exact=True).first
        title.wait_for()
        page.locator(".js-plotly-plot").first.wait_for()  # a chart was drawn, not just its title
        # sections top to bottom: the curves lead, the summaries follow (their names' prefixes)
        tops = [page.get_by_text(s, exact=True).first.bounding_box()["y"] for s in ("curves", "diagnostics", "summary")]
        assert tops == sorted(tops), tops
        assert title.bounding_box()["y"] < tops[1], "full_train_loss is in the first section"


def test_the_dataset_column_shows_the_input(ui):
    page, base, exp_id, client, shots = ui
    kid = children(client, exp_id)[0]
    ds = client.get_run(kid.info.run_id).inputs.dataset_inputs[0].dataset
    with shot(page, shots, "dataset-column"):
        page.goto(runs_url(base, exp_id, view=False))  # MLflow's default columns (the view has the answer's)
        page.get_by_role("link", name=kid.info.run_name, exact=True).wait_for()
        assert page.get_by_text(f"{ds.name} ({ds.digest})").count() >= len(children(client, exp_id))
