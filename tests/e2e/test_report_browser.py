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
import shutil
from pathlib import Path

import pytest
from test_ui import CHROMIUM, CHROMIUM_ARGS, _need_browser

from bpresearch.cli import main

pytestmark = [pytest.mark.ui]

ROOT = Path(__file__).resolve().parents[2]
GRID = ["--set", "train.steps=20", "--set", "train.eval_every=5", "--set", "sweep.seeds=1",
        "--set", "sweep.learning_rate=[0.01, 0.03, 0.1]", "--set", 'sweep.batch_size=[8, "full"]']
VIEWPORT = {"width": 1280, "height": 800}


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
    assert main(["report", "linear-regression", "--tracking-uri", uri, "--out", str(out)]) == 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(30_000)
        try:
            yield page, out
        finally:
            browser.close()


def _open(page, path: Path):
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")


def test_the_recommendation_table_is_on_the_first_screen(pages):
    page, out = pages
    _open(page, out / "linear-regression" / "index.html")
    box = page.locator("table#recommendations").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], box
    rows = page.locator("table#recommendations tbody tr").count()
    summary = json.loads((out / "linear-regression" / "summary.json").read_text())
    base = summary["variants"][0]   # the page of the first variant
    assert rows == len(base["recommendations"]) == 2 * len(base["cells"][0]["targets"])  # 2 batch sizes × targets


def test_every_image_loads_and_nothing_overflows(pages):
    page, out = pages
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
    page, out = pages
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
    page, out = pages
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
    page, out = pages
    _open(page, out / "linear-regression" / "index.html")
    table = page.locator("table#variants")
    assert table.is_visible()          # above the folds, not hidden in one
    text = table.inner_text()
    assert "train.steps=30" in text or "train.steps = 30" in text
    assert table.locator("tbody tr").count() >= 2


def test_the_index_lists_every_report_in_the_folder(pages):
    page, out = pages
    _open(page, out / "index.html")
    links = page.evaluate("[...document.querySelectorAll('table#reports a')].map(a => a.textContent)")
    assert sorted(links) == ["linear-regression", "other-study"]
    row = page.locator("table#reports tr", has_text="linear-regression").inner_text()
    assert "2" in row and "train.steps" in row   # two variants, the other one named
