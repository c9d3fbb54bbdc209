"""Value checks: each validates one value of an experiment file and returns it normalized.

A check raises ``Invalid`` with the problem only ("must be ≥ 1, got 0"); the caller adds
the file and the key. The ``[sweep]`` checks turn what a file writes (a list, a range, a
count) into the list of values swept.
"""

from __future__ import annotations

import difflib
import math

import numpy as np


class Invalid(Exception):
    """A value that fails its check; the message is the problem."""


INT_MAX = 2**31 - 1  # counts, sizes and seeds become int32 inside the compiled program


def integer(lo=None, hi=INT_MAX):
    """An int (not a bool) in ``[lo, hi]``."""
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise Invalid(f"must be an integer, got {v!r}")
        if lo is not None and v < lo:
            raise Invalid(f"must be ≥ {lo}, got {v}")
        if v > hi:
            raise Invalid(f"must be ≤ {hi}, got {v}")
        return v
    return check


def number(lo=None, hi=None, lo_open=False, hi_open=False):
    """A finite float (ints accepted) between ``lo`` and ``hi``, each bound closed unless ``*_open``."""
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise Invalid(f"must be finite, got {v}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise Invalid(f"must be {'>' if lo_open else '≥'} {lo}, got {v:g}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise Invalid(f"must be {'<' if hi_open else '≤'} {hi}, got {v:g}")
        return v
    return check


def string(v):
    """Any string."""
    if not isinstance(v, str):
        raise Invalid(f"must be a string, got {v!r}")
    return v


def boolean(v):
    """``true`` or ``false`` (not 0 or 1)."""
    if not isinstance(v, bool):
        raise Invalid(f"must be true or false, got {v!r}")
    return v


def choice(*options):
    """One of ``options``."""
    def check(v):
        if v not in options:
            raise Invalid(f"must be one of {', '.join(map(str, options))}; got {v!r}")
        return v
    return check


def list_of(item, min_len=0, exact_len=None):
    """A list whose elements pass ``item``; the message names the failing element."""
    def check(v):
        if not isinstance(v, list):
            raise Invalid(f"must be a list, got {v!r}")
        if exact_len is not None and len(v) != exact_len:
            raise Invalid(f"must have {exact_len} elements, got {len(v)}")
        if len(v) < min_len:
            raise Invalid(f"must have at least {min_len} element(s)")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except Invalid as e:
                raise Invalid(f"element {i}: {e}") from None
        return out
    return check


def optional(check):
    """``check``, or None (a default that follows other settings, or an unset key)."""
    return lambda v: None if v is None else check(v)


def or_user(check, names_user, form: str):
    """A value passing ``check``, or a string that ``names_user`` accepts (a kind naming user code, ``form``)."""
    def either(v):
        if isinstance(v, str) and names_user(v):
            return v
        try:
            return check(v)
        except Invalid as e:
            raise Invalid(f"{e} (or {form})") from None
    return either


def auto_or(check):
    """The string ``"auto"``, or a value passing ``check``."""
    return lambda v: v if v == "auto" else check(v)


# ---------------------------------------------------------------- [sweep] values
positive = number(lo=0.0, lo_open=True)


def learning_rates(v) -> list[float]:
    """A list (or one number) of learning rates > 0, a range ``{min, max, num, scale}``, or ``"auto"``
    (``["auto"]``: placed below the stability bound when the grid is expanded, ``spec.auto``)."""
    if v == "auto":
        return ["auto"]
    if not isinstance(v, dict):
        return list_of(positive, min_len=1)(v if isinstance(v, list) else [v])
    unknown = set(v) - {"min", "max", "num", "scale"}
    if unknown:
        raise Invalid(f"unknown range key {min(unknown)!r} (expected min, max, num, scale)")
    for k in ("min", "max", "num"):
        if k not in v:
            raise Invalid(f"range needs {k!r}")
    lo, hi = positive(v["min"]), positive(v["max"])
    num = integer(lo=1)(v["num"])
    scale = choice("log", "linear")(v.get("scale", "log"))
    if hi < lo:
        raise Invalid(f"empty range: max {hi:g} < min {lo:g}")
    if num > 1 and hi == lo:
        raise Invalid("empty range: min equals max but num > 1")
    grid = np.geomspace(lo, hi, num) if scale == "log" else np.linspace(lo, hi, num)
    return [float(f"{x:.6g}") for x in grid]


def batch_sizes(v) -> list:
    """A list (or one value) of batch sizes ≥ 1 and/or ``"full"``, or ``"auto"`` (``["auto"]``: powers of
    two up to the full batch, ``spec.auto``)."""
    if v == "auto":
        return ["auto"]
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise Invalid("must not be empty")
    return [x if x == "full" else _batch_size(x) for x in vals]


def did_you_mean(word: str, options) -> str:
    """`` (did you mean 'train'?)`` when ``word`` is a likely typo of one of ``options``, else ``""``."""
    close = difflib.get_close_matches(word, [o for o in options if o], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _batch_size(x):
    if isinstance(x, str):
        raise Invalid(f"must be an integer or \"full\", got {x!r}{did_you_mean(x.lower(), ['full'])}")
    return integer(lo=1)(x)


def seeds(v) -> list[int]:
    """A count n (the seeds 0 … n−1) or a list of seeds."""
    if isinstance(v, list):
        return list_of(integer(lo=0), min_len=1)(v)
    return list(range(integer(lo=1)(v)))
