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
