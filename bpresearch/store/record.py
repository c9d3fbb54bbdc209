"""What the store takes for one run: its params, curves, summary and artifacts (no JAX here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunRecord:
    run: Any   # spec.experiment.Run or store.spool.SpooledRun: .name, .hash, .config
    params: dict[str, str]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]   # key -> (steps int64, values float64), finite values
    summary: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> text
    dataset: dict | None = None              # ``dataset_input``: the run's MLflow dataset input
    times: tuple[int, int] | None = None     # (start, end) ms since the epoch: when it trained
    group: str = ""                          # the compiled group it trained in (the ``bpresearch.group`` tag)
