import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # bench/ (its servers module) is not an installed package
    sys.path.insert(0, str(ROOT))
EXPERIMENTS = ROOT / "experiments"


@pytest.fixture
def store(tmp_path):
    """A fresh, real sqlite MLflow store in a temp folder."""
    return f"sqlite:///{tmp_path}/mlflow.db"


# The example experiment file of README.md and docs/experiments.md.
LINEAR_EXAMPLE = """\
name = "linear-regression"
description = "Gradient descent on least squares"

[data]
source = "file"            # "digits" | "teacher" | "file" (.npz with X, y; or .csv)
path = "linear.npz"

[model]
kind = "neuron"            # "neuron" | "mlp" | "seed_graph"
activation = "identity"    # identity | sigmoid | tanh | relu
bias = false
init = "zeros"             # zeros | normal | glorot

[loss]
kind = "half_mse"          # half_mse | cross_entropy

[optimizer]
kind = "sgd"               # sgd | momentum | adam | random_search

[train]
steps = 300
eval_every = 1
targets = [0.06]           # full-training-loss values that count as "converged"

[sweep]
learning_rate = { min = 0.01, max = 1.0, num = 9, scale = "log" }   # or a list
batch_size = [1, 8, 32, "full"]                                     # "full" = the whole training set
seeds = 3                                                           # a count, or a list
"""


@pytest.fixture
def linear_example(tmp_path):
    """The documented example experiment file, verbatim, beside a copy of linear.npz."""
    shutil.copy(EXPERIMENTS / "linear.npz", tmp_path / "linear.npz")
    path = tmp_path / "linear-regression.toml"
    path.write_text(LINEAR_EXAMPLE)
    return path
