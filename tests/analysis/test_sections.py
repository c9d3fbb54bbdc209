"""The report's sections without a store: the import rule, and the configuration as the runs logged it."""

import subprocess
import sys

import numpy as np
import pandas as pd

from analysis.sections.intro import as_logged

RESOLVED = """\
# resolved from experiments/x.toml
name = "x"

[optimizer]
kind = "sgd"
momentum = 0.0

[train]
steps = 100
targets = [0.1, 0.01]

[sweep]
"optimizer.kind" = ["sgd", "momentum"]
learning_rate = [0.1, 1.0]
"""

PARSED = {"name": "x", "optimizer": {"kind": "sgd", "momentum": 0.0},
          "train": {"steps": 100, "targets": [0.1, 0.01]},
          "sweep": {"optimizer.kind": ["sgd", "momentum"], "learning_rate": [0.1, 1.0]}}


def test_import_of_the_report_loads_no_jax():
    code = "import analysis.report, sys; print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_resolved_config_shows_what_the_runs_logged():
    # sgd runs do not log momentum (it does not apply); momentum runs logged the default 0.9,
    # while the resolved file, written from the base config (kind = sgd), says 0.0
    runs = pd.DataFrame({"params.optimizer.kind": ["sgd", "momentum"], "params.optimizer.momentum": [np.nan, "0.9"],
                         "params.train.steps": ["100", "100"], "params.train.targets": ["[0.1, 0.01]"] * 2,
                         "params.optimizer.learning_rate": ["0.1", "1.0"]})
    text = as_logged(RESOLVED, PARSED, runs)
    lines = text.splitlines()
    assert "momentum = 0.9  # as the runs logged it; the resolved file says 0.0" in lines
    assert 'kind = "sgd"' in lines          # swept: the [sweep] table lists its values
    assert "steps = 100" in lines and "targets = [0.1, 0.01]" in lines  # agree with what was logged
    assert text.replace("momentum = 0.9  # as the runs logged it; the resolved file says 0.0", "momentum = 0.0") \
        == RESOLVED


def test_a_config_the_runs_agree_with_is_shown_as_written():
    runs = pd.DataFrame({"params.optimizer.kind": ["sgd"], "params.train.steps": ["100"]})
    assert as_logged(RESOLVED, PARSED, runs) == RESOLVED
    several = pd.DataFrame({"params.train.steps": ["100", "200"]})
    assert "steps = 100  # the runs logged 100, 200" in as_logged(RESOLVED, PARSED, several).splitlines()


# ---------------------------------------------------------------- the page's parts without a store
def test_a_long_finding_becomes_bullets_of_at_most_300_characters():
    from analysis.render import bullets

    clause = "at batch size 8 the steps went from 281–285 to 36–40 (90% intervals 218–284 and 36.7–46.5)"
    text = "First sentence is short. " + "; ".join([clause] * 8) + ". Last one."
    parts = bullets(text)
    assert len(parts) > 3 and all(len(p) <= 300 for p in parts)
    assert " ".join(p.removeprefix("… ") for p in parts).replace(" ;", ";").count(clause) == 8
    assert bullets("short") == ["short"]


def test_cells_not_run_read_as_a_dash_never_nan():
    from analysis.render import _cell, _html_table

    assert _cell(float("nan")) == "—" and _cell(None) == "—" and _cell("nan") == "—"
    assert _cell(float("inf")) == "not reached" and _cell(12.0) == "12"
    html = _html_table(pd.DataFrame({"batch size": [8, 32], "steps": [40.0, np.nan]}))
    assert "nan" not in html and "<td>—</td>" in html


def _rec(target, bs, steps, lr, reached=True, **kw):
    return {"target": target, "group": "", "batch_size": bs, "full_batch": False, "reached": reached,
            "best_learning_rate": lr if reached else None, "bracket": [lr / 2, lr * 2] if reached else None,
            "steps": steps if reached else None, "steps_interval": None,
            "steps_crossing": [steps, steps] if reached else None, "seeds_reached": 3 if reached else 0,
            "seeds": 3, "examples": steps * bs if reached else None, "tuned": reached, "edge": "",
            "try_learning_rates": "", "resolved": reached, "resolution": None, **kw}


def test_the_answer_names_the_fewest_steps_and_examples_and_where_scaling_stops():
    from analysis.recommend import answer, table

    # from 8 to 16 the examples grow 1.2× (within 2× of batch size 8), to 64 3.2×: scaling stops after 16
    recs = [_rec("0.5", 8, 100, 0.1), _rec("0.5", 16, 60, 0.2), _rec("0.5", 64, 40, 0.4),
            _rec("0.1", 8, 300, 0.1), _rec("0.1", 16, 0, 0.0, reached=False)]
    text = answer(recs, runs=90, diverged=4, first_diverged=0.8)
    assert text[0] == "Fewest steps to loss 0.5: 40 at batch size 64, η = 0.4."
    assert text[1] == "Fewest examples: 800 at batch size 8, η = 0.1."
    assert text[2].startswith("Up to batch size 16,") and "batch size 64 needs 40 steps, 3.2× the examples" in text[2]
    assert text[3] == "4 of 90 runs diverged, none below η = 0.8." and len(text) <= 5
    later = answer(recs[:3] + [_rec("0.1", 8, 0, 0.0, reached=False)], runs=9, diverged=0, first_diverged=None)
    assert later[3] == "No setting reached loss 0.1 within the steps tried."
    t = table(recs, [])
    assert list(t["target loss"]) == ["0.5", "", "", "0.1", ""]
    assert list(t["steps"]) == ["100", "60", "40", "300", "not reached"] and t["best η"].iloc[-1] == "—"


def _iv(lo, hi, coverage=0.75):
    return {"interval": [lo, hi], "coverage": coverage, "what": "range of 3 seeds", "why_none": None}


def test_the_answer_names_no_winner_inside_the_seeds_intervals():
    from analysis.recommend import answer

    # identical settings under two names: the same steps and intervals, a tie that names both
    same = [_rec("0.5", 8, 40, 0.1, group="optimizer=sgd", steps_interval=_iv(38, 45)),
            _rec("0.5", 8, 40, 0.1, group="optimizer=momentum", steps_interval=_iv(38, 45))]
    text = answer(same, runs=6, diverged=0, first_diverged=None)
    assert text[0].startswith("Fewest steps to loss 0.5: a tie within the seeds' intervals between")
    assert "optimizer=sgd" in text[0] and "optimizer=momentum" in text[0]
    # more than two tied: counted, the fewest named, the rest left to the table (no sentence listing every group)
    many = same + [_rec("0.5", 8, 41, 0.1, group=f"optimizer=adam, activation={a}", steps_interval=_iv(38, 45))
                   for a in ("tanh", "relu")]
    text = answer(many, runs=12, diverged=0, first_diverged=None)
    assert text[0].startswith("Fewest steps to loss 0.5: 4 settings tie within the seeds' intervals, the fewest ")
    assert "activation=" not in text[0] and text[0].endswith("the table compares them.")
    # intervals apart: a winner
    apart = [_rec("0.5", 8, 40, 0.1, steps_interval=_iv(38, 45)), _rec("0.5", 16, 90, 0.2, steps_interval=_iv(80, 99))]
    assert answer(apart, runs=6, diverged=0, first_diverged=None)[0] == "Fewest steps to loss 0.5: 40 at batch size 8, η = 0.1."
    # one seed: no interval, no winner
    one = [_rec("0.5", 8, 40, 0.1, seeds=1, steps_interval={"interval": None, "coverage": None, "what": None,
                                                            "why_none": "one seed"}),
           _rec("0.5", 16, 90, 0.2, seeds=1)]
    assert "no setting is named fastest" in answer(one, runs=2, diverged=0, first_diverged=None)[0]
    # one seed, identical settings under two names: both named, neither first
    twins = [_rec("0.5", 8, 40, 0.1, seeds=1, group=g) for g in ("optimizer=sgd", "optimizer=momentum")]
    text = answer(twins, runs=2, diverged=0, first_diverged=None)[0]
    assert text.startswith("Fewest steps to loss 0.5: 40 at both batch size 8 (optimizer=")
    assert "optimizer=sgd" in text and "optimizer=momentum" in text and "no setting is named fastest" in text


def test_a_variant_is_set_beside_the_base_cell_by_cell():
    from analysis.recommend import compare_variants

    base = [_rec("0.5", 8, 100, 0.1), _rec("0.5", 32, 30, 0.4)]
    variant = [_rec("0.5", 8, 50, 0.2), _rec("0.5", 32, 0, 0, reached=False)]
    t = compare_variants(base, [("model.hidden=[32]", variant)], [])
    assert list(t["change"]) == ["steps ×0.5, η ×2", "reached only in the base"]
    assert list(t["base: steps (η)"]) == ["100 (0.1)", "30 (0.4)"]


def test_at_most_eight_lines_keep_the_best_and_both_ends():
    from analysis.figures.style import line_colors, pick_lines

    lrs = [0.01 * 1.41 ** i for i in range(13)]
    shown = pick_lines(lrs, keep=lrs[5:8])
    assert len(shown) == 8 and set(lrs[5:8]) <= set(shown) and {lrs[0], lrs[-1]} <= set(shown)
    colors = line_colors(shown)
    assert all(colors[a] != colors[b] for a, b in zip(shown, shown[1:]))


def test_the_main_page_keeps_the_answer_and_the_figures_and_the_details_page_the_words(tmp_path):
    from analysis.figures.style import plt
    from analysis.pages import DETAILS, main_page, write
    from analysis.render import Report, to_html

    rep = Report("x")
    rep.table("", pd.DataFrame({"batch size": [8]}), "recommendations")
    rep.fold_from = len(rep.blocks)
    rep.h2("What was run")
    rep.ul(["provenance"])
    rep.pre("[train]\nsteps = 100")
    rep.h2("Steps to loss 0.1")
    rep.h3("optimizer=sgd")
    rep.figure("heatmap", "Steps over η × batch size", plt.figure)
    rep.ul(["a finding"])
    rep.table("Outcomes", pd.DataFrame({"steps": [1.0]}))
    main = to_html(main_page(rep))
    assert "recommendations" in main and "optimizer=sgd" in main and "data:image/png" in main
    assert "a finding" not in main and "provenance" not in main and "steps = 100" not in main
    assert f"href='{DETAILS}#what-was-run'" in main and f"href='{DETAILS}#steps-to-loss-0-1'" in main
    assert main.count("<details") == 1   # only the section with a figure is folded here
    files = {p.name for p in write(rep, tmp_path)}
    assert files == {"heatmap.png", "index.html", DETAILS, "report.md"}
    details = (tmp_path / DETAILS).read_text()
    assert "a finding" in details and "provenance" in details and "src='heatmap.png'" in details
    assert "id='what-was-run'" in details and "id='steps-to-loss-0-1'" in details


def test_findings_about_facet_groups_go_under_one_heading_per_group():
    from analysis.pages import by_group

    found = ["optimizer.kind=adam, model.hidden=[32, 16]: at batch size 8 the best η was 0.1.", "Its continuation.",
             "optimizer.kind=sgd, model.hidden=[32, 16]: at batch size 8 the best η was 1."]
    assert by_group(found) == [("optimizer.kind=adam, model.hidden=[32, 16]",
                                ["At batch size 8 the best η was 0.1.", "Its continuation."]),
                               ("optimizer.kind=sgd, model.hidden=[32, 16]", ["At batch size 8 the best η was 1."])]
    assert by_group(["At batch size 8: 40 steps.", "x"]) == [("", ["At batch size 8: 40 steps.", "x"])]
