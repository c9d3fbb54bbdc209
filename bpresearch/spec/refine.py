"""``[sweep] refine``: which targets to refine the learning rate for, how finely, how long.

What was asked for, checked; the rounds themselves are planned by ``run.refine`` and judged
by ``bpresearch.verdicts``. The table is read through ``keys.refine_table``, as the report
reads it from a sweep's resolved config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bpresearch import keys


@dataclass(frozen=True)
class Settings:
    """``[sweep] refine = {target, resolution, max_rounds, per_round}``."""
    targets: tuple[float, ...]          # each one of [train] targets; every one is refined
    resolution: float = keys.REFINE_DEFAULTS["resolution"]   # four learning rates per doubling
    max_rounds: int = keys.REFINE_DEFAULTS["max_rounds"]     # rounds of added learning rates per group
    per_round: int | None = None        # learning rates per group per round (default: fill one chunk)


def _number(key: str, v, lo, integer: bool = False):
    """``v`` checked as a finite number > lo (an integer ≥ lo); else ``ValueError("refine.key: …")``."""
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or not math.isfinite(v):
        raise ValueError(f"refine.{key}: must be {'an integer' if integer else 'a finite number'}, got {v!r}")
    if (v < lo) if integer else (v <= lo):
        raise ValueError(f"refine.{key}: must be {'≥' if integer else '>'} {lo}, got {v}")
    return v


def parse_settings(raw, train_targets) -> Settings:
    """Validate ``[sweep] refine``; a ``ValueError``'s message is ``key: problem`` (one line)."""
    if not isinstance(raw, dict):
        raise ValueError(f"refine: must be a table such as {{ target = 0.1, resolution = 1.19, max_rounds = 6 }}, "
                         f"got {raw!r}")
    for k in raw:
        if k not in keys.REFINE_KEYS:
            raise ValueError(f"refine.{k}: unknown key (expected one of: {', '.join(keys.REFINE_KEYS)})")
    if not train_targets:
        raise ValueError("refine: needs [train] targets (it tunes steps to a target)")
    table = keys.refine_table(raw, train_targets)
    if not table["targets"]:
        raise ValueError("refine.target: must not be empty")
    for t in table["targets"]:
        _number("target", t, 0.0)
        if not any(abs(t - x) <= 1e-12 * max(1.0, abs(x)) for x in train_targets):
            raise ValueError(f"refine.target: {t:g} is not one of [train] targets "
                             f"({', '.join(f'{x:g}' for x in train_targets)})")
    per_round = table["per_round"]
    return Settings(tuple(float(t) for t in table["targets"]),
                    float(_number("resolution", table["resolution"], 1.0)),
                    _number("max_rounds", table["max_rounds"], 0, integer=True),
                    None if per_round is None else _number("per_round", per_round, 1, True))
