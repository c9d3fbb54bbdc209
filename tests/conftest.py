import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


@pytest.fixture
def store(tmp_path):
    """A fresh, real sqlite MLflow store in a temp folder."""
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def linear_example(tmp_path):
    """The issue's example experiment file, verbatim, beside a copy of linear.npz."""
    shutil.copy(EXPERIMENTS / "linear.npz", tmp_path / "linear.npz")
    path = tmp_path / "linear-regression.toml"
    shutil.copy(EXPERIMENTS / "linear-regression.toml", path)
    return path
