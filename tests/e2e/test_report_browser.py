"""The report pages as a researcher opens them, in a real headless Chromium.

A tiny sweep (two batch sizes, three learning rates, one seed, 20 steps), a variant of it
(``--set train.steps=30``) and a second experiment go into a temp store; ``bpresearch
report`` writes the first experiment only. Debian's Chromium, driven by Playwright, opens
the files and checks what a person sees at 1280×800: the recommendation table on the first
screen, every image loaded, nothing wider than the window, the folded sections closed and
opening on a click, the variant set beside the base, and an index that lists every report
in the folder, also the one the last command did not write. The details page (findings,
tables, configuration) loads from the main page's links, its images too, and fits the window.

Nothing is downloaded: the browser is the system's (see ``test_ui``). Without it the tests
skip locally and fail under CI.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from test_ui import CHROMIUM, CHROMIUM_ARGS, _need_browser

from bpresearch.cli import main
from bpresearch.store.views import experiment_url, run_url

pytestmark = [pytest.mark.ui]

ROOT = Path(__file__).resolve().parents[2]
GRID = ["--set", "train.steps=20", "--set", "train.eval_every=5", "--set", "sweep.seeds=1",
        "--set", "sweep.learning_rate=[0.01, 0.03, 0.1]", "--set", 'sweep.batch_size=[8, "full"]']
VIEWPORT = {"width": 1280, "height": 800}
UI = "http://127.0.0.1:5000"   # the MLflow UI's address the report links to (not served here: test_ui follows links)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """(browser page, output folder) after two experiments were reported, the second alone last."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("report")
    shutil.copy(ROOT / "experiments" / "linear.npz", tmp)
    toml = tmp / "linear-regression.toml"
    shutil.copy(ROOT / "experiments" / "linear-regression.toml", toml)
    uri = f"sqlite:///{tmp}/mlflow.db"
    out = tmp / "reports"
    for extra in ([], ["--set", "train.steps=30"], ["--set", "name=other-study"]):
        assert main(["sweep", str(toml), "--tracking-uri", uri, *GRID, *extra]) == 0
    assert main(["report", "other-study", "--tracking-uri", uri, "--out", str(out)]) == 0
    assert main(["report", "linear-regression", "--tracking-uri", uri, "--out", str(out), "--ui-url", UI]) == 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(30_000)
        try:
            yield page, out, uri
        finally:
            browser.close()


def _open(page, path: Path):
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")


def test_the_recommendation_table_is_on_the_first_screen(pages):
    page, out, _ = pages
    _open(page, out / "linear-regression" / "index.html")
    box = page.locator("table#recommendations").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], box
    rows = page.locator("table#recommendations tbody tr").count()
    summary = json.loads((out / "linear-regression" / "summary.json").read_text())
    base = summary["variants"][0]   # the page of the first variant
    assert rows == len(base["recommendations"]) == 2 * len(base["cells"][0]["targets"])  # 2 batch sizes × targets


def test_every_image_loads_and_nothing_overflows(pages):
    page, out, _ = pages
    pages = sorted(out.rglob("*.html"))
    assert {p.name for p in pages} == {"index.html", "details.html"}
    for html in pages:
        _open(page, html)
        for d in page.locator("details").all():   # folded figures count too
            d.evaluate("e => e.open = true")
        broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
        images = page.evaluate("document.images.length")
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert broken == 0, f"{html}: {broken} of {images} images did not load"
        assert wide <= 0, f"{html}: {wide}px wider than the window"
    _open(page, out / "linear-regression" / "index.html")
    assert page.evaluate("document.images.length") >= 1


def test_folded_sections_are_closed_and_open_on_a_click(pages):
    page, out, _ = pages
    _open(page, out / "linear-regression" / "index.html")
    details = page.locator("details")
    assert details.count() >= 3
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => !d.open)")
    first = details.first
    inside = first.locator(":scope > :not(summary)").first
    assert not inside.is_visible()
    first.locator("summary").click()
    assert first.evaluate("d => d.open") and inside.is_visible()
    # the contents line links every folded section by its id
    ids = page.evaluate("[...document.querySelectorAll('details')].map(d => d.id)")
    hrefs = page.evaluate("[...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))")
    assert ids == [h[1:] for h in hrefs if h.startswith("#")]
    # folded: figures only; the findings and tables are on the details page
    assert page.locator("details ul, details table, details pre").count() == 0
    assert page.locator("details img").count() >= 1


def test_the_main_page_links_every_section_of_the_details_page(pages):
    page, out, _ = pages
    main = out / "linear-regression" / "index.html"
    _open(page, main)
    links = page.evaluate("[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))"
                          ".filter(h => h.startsWith('details.html'))")
    assert "details.html" in links   # at the top
    sections = {h.split("#")[1] for h in links if "#" in h}
    page.locator("a[href='details.html']").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/linear-regression/details.html")
    ids = set(page.evaluate("[...document.querySelectorAll('h2[id]')].map(h => h.id)"))
    assert sections and sections <= ids, sections - ids
    # every section of the details page is reached from the main page: folded there with its figures, or linked
    assert ids == sections
    assert page.locator("ul li").count() >= 5 and page.locator("table").count() >= 3 and page.locator("pre").count()
    _open(page, main)
    fold = page.locator("details").first
    fold.locator("summary").click()
    fold.locator("a[href^='details.html#']").click()   # the fold's own link to its words
    page.wait_for_load_state("load")
    target = page.url.split("#")[1]
    assert page.locator(f"h2#{target}").is_visible()


def test_the_variant_is_set_beside_the_base(pages):
    page, out, _ = pages
    _open(page, out / "linear-regression" / "index.html")
    table = page.locator("table#variants")
    assert table.is_visible()          # above the folds, not hidden in one
    text = table.inner_text()
    assert "train.steps=30" in text or "train.steps = 30" in text
    assert table.locator("tbody tr").count() >= 2


def test_the_index_lists_every_report_in_the_folder(pages):
    page, out, _ = pages
    _open(page, out / "index.html")
    links = page.evaluate("[...document.querySelectorAll('table#reports a')].map(a => a.textContent)")
    assert sorted(links) == ["linear-regression", "other-study"]
    row = page.locator("table#reports tr", has_text="linear-regression").inner_text()
    assert "2" in row and "train.steps" in row   # two variants, the other one named


def test_with_a_ui_address_each_cell_links_to_its_run(pages):
    """``--ui-url``: the title opens the experiment's view, each best η its run's page (one seed),
    both in Model training mode; the run is the one the store holds at that batch size and η
    (of this page's variant: 20 steps).
    The report written without ``--ui-url`` links nowhere outside its folder."""
    from mlflow.tracking import MlflowClient

    page, out, uri = pages
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("linear-regression")
    summary = json.loads((out / "linear-regression" / "summary.json").read_text())
    recs = summary["variants"][0]["recommendations"]
    _open(page, out / "linear-regression" / "index.html")
    assert page.locator("h1 a").get_attribute("href") == experiment_url(UI, exp.experiment_id)
    cells = page.evaluate("""[...document.querySelectorAll('table#recommendations tbody tr')].map(tr =>
        [...tr.cells].map(td => { const a = td.querySelector('a'); return a ? a.getAttribute('href') : null; }))""")
    assert len(cells) == len(recs)
    kids = client.search_runs([exp.experiment_id], "tags.`bpresearch.kind` = 'run' AND params.`train.steps` = '20'")
    for rec, row in zip(recs, cells):
        links = [h for h in row if h]
        if not rec["reached"]:
            assert links == [], rec
            continue
        want = [k.info.run_id for k in kids if k.data.params["batch_size"] == str(rec["batch_size"])
                and float(k.data.params["learning_rate"]) == rec["best_learning_rate"]]
        assert len(want) == 1 and links == [run_url(UI, exp.experiment_id, want[0])], (rec, links)
        assert "workflowType=machine_learning" in links[0]
    assert any(any(row) for row in cells)
    _open(page, out / "other-study" / "index.html")
    assert page.evaluate("[...document.links].filter(a => a.href.startsWith('http')).length") == 0


NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _numbers(obj) -> list[float]:
    """Every number in a summary.json entry: its values and the numbers its values write as text
    (a target "0.06", learning rates to try "0.316–3.16"), leaving out its sentences."""
    if isinstance(obj, dict):
        return [x for k, v in obj.items() if k not in ("answer", "headlines") for x in _numbers(v) + _numbers(k)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, bool) or obj is None:
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    return [float(n.replace(",", "")) for n in NUMBER.findall(str(obj))]


def _shown_as(x: float, v: float) -> bool:
    """Whether ``x`` on the page is ``v`` as the page writes it: whole steps (rounded up), 3
    significant digits, or a share as a percentage."""
    return any(abs(x - w) <= 0.5 * 10 ** (math.floor(math.log10(abs(w))) - 2) if w else x == 0
               for w in (v, math.ceil(v - 1e-9), 100 * v))


def test_every_number_on_the_first_screen_is_in_summary_json(pages):
    """The lead line, the recommendation table and the sentences under it (the glossary defines
    terms: its numbers are no results) show only numbers that summary.json holds."""
    page, out, _ = pages
    _open(page, out / "linear-regression" / "index.html")
    summary = json.loads((out / "linear-regression" / "summary.json").read_text())
    entry = summary["variants"][0]
    values = _numbers(entry)
    text = page.evaluate("""() => [document.querySelector('p.lead'), document.querySelector('table#recommendations'),
        document.querySelector('table#recommendations').closest('div').nextElementSibling].map(e => e.innerText)""")
    sentences = [li for li in text[2].split("\n") if li.strip()]
    assert sentences == entry["answer"]   # the sentences are summary.json's, word for word
    shown = [float(n.replace(",", "")) for t in text[:2] for n in NUMBER.findall(t)]
    missing = [x for x in shown if not any(_shown_as(x, v) for v in values)]
    assert not missing, f"numbers on the first screen that summary.json does not hold: {missing}"
    assert len(shown) >= 15, shown   # the lead's run and seed counts, and every row's numbers
