"""The store → tidy pandas frames: one row per run, one row per curve point.

Reads any MLflow store, through ``bpresearch.store.reads`` (the only door to MLflow;
it says how runs and curves are read). The names of params, metrics and tags come from
``bpresearch.keys``, the naming contract the sweep writes by.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch.store import reads as store
from bpresearch.store.reads import StoreError, experiment_names  # noqa: F401 - part of this module's API

from . import curvestore


@dataclass
class ExperimentData:
    """What the store holds about one experiment.

    ``runs`` are all its FINISHED child runs, typed; ``variants`` split them by the fixed
    settings of the sweeps that made them (``split_variants``), the base sweep first;
    ``unfinished`` counts the child runs that are not FINISHED by status (ignored).
    """
    name: str
    experiment_id: str
    description: str
    uri: str
    runs: pd.DataFrame
    sweeps: pd.DataFrame
    unfinished: dict[str, int] = field(default_factory=dict)
    variants: list = field(default_factory=list)

    @property
    def latest_sweep(self) -> pd.Series | None:
        """The parent run of the most recent sweep, or None."""
        if self.sweeps.empty:
            return None
        return self.sweeps.sort_values("start_time").iloc[-1]


def runs_frame(stored: list[store.StoredRun]) -> pd.DataFrame:
    """One row per run: ``params.*``, ``metrics.*`` (last values), ``tags.*`` and info.

    Typed convenience columns are added where the params exist: ``learning_rate`` (float),
    ``batch_size`` (int; the full set is its size), ``seed`` (int), ``full_batch`` (bool),
    ``optimizer``, ``steps`` (int), ``diverged`` (bool), ``diverged_step`` (int).

    Args:
        stored: runs as ``reads.runs`` returns them.

    Returns:
        The frame, sorted by learning rate, batch size and seed where those exist.
    """
    rows = []
    for r in stored:
        row = {"run_id": r.run_id, "run_name": r.name, "status": r.status,
               "start_time": pd.to_datetime(r.start_time, unit="ms", utc=True),
               "kind": r.tags.get(R.KIND_TAG), "parent_id": r.parent_id, "config_hash": r.tags.get(R.HASH_TAG)}
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.tags.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    typed = {R.LEARNING_RATE: float, R.BATCH_SIZE: int, R.SEED: int, R.STEPS: int}
    for name, kind in typed.items():
        if f"params.{name}" in df:
            df[name] = pd.to_numeric(df[f"params.{name}"], errors="coerce").astype(kind if kind is float else "Int64")
    if f"params.{R.OPTIMIZER}" in df:
        df["optimizer"] = df[f"params.{R.OPTIMIZER}"]
    if "params.train.full_batch" in df:
        df["full_batch"] = df["params.train.full_batch"] == R.param_text(True)
    if f"metrics.{R.DIVERGED}" in df:
        df["diverged"] = df[f"metrics.{R.DIVERGED}"].fillna(0) > 0.5
        df["diverged_step"] = df[f"metrics.{R.DIVERGED_STEP}"].fillna(-1).astype(int)
    order = [c for c in ("optimizer", "batch_size", "learning_rate", "seed") if c in df]
    return df.sort_values(order).reset_index(drop=True) if order else df


FIXED_PARAMS_IGNORED = {"train.full_batch",   # follows from the batch size, which is swept
                        "train.targets"}      # questions asked of the runs, not how they trained


@dataclass
class Variant:
    """The runs of one experiment made with one set of fixed settings (``--set`` overrides).

    Sweeps of one experiment file whose resolved configs agree on every key they do not
    sweep form one variant; their runs are analysed together. ``facets`` are the keys swept
    other than learning rate, batch size and seed (``optimizer.kind``, ``model.activation``…):
    runs are never pooled across their values.
    """
    slug: str                    # a folder name: "base", or the overrides as text
    overrides: dict[str, str]    # section.key -> value where it differs from the base variant ({} for the base)
    fixed: dict[str, str]        # every fixed section.key -> value (param text)
    facets: list[str]            # swept section.key params other than learning rate, batch size, seed
    runs: pd.DataFrame           # its FINISHED child runs, with one typed column per facet
    sweeps: pd.DataFrame         # its parent sweep runs
    resolved_toml: str | None = None
    resolved: dict | None = None
    base: bool = False           # the sweep of the file as written (no --set outside [sweep])
    placement: dict | None = None  # learning_rate = "auto": its latest sweep's auto.json (spec.auto.Placement)

    @property
    def label(self) -> str:
        """``base sweep`` or ``train.steps=300, data.noise=0.1``."""
        if self.base:
            return "base sweep (the experiment file as written)"
        return ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "the experiment file as written"

    @property
    def latest_sweep(self) -> pd.Series | None:
        if self.sweeps.empty:
            return None
        return self.sweeps.sort_values("start_time").iloc[-1]


def _fixed_settings(resolved: dict) -> tuple[dict[str, str], set[str]]:
    """(fixed section.key -> param text, swept section.key params) of one resolved config."""
    swept = R.swept_params(resolved.get("sweep", {}))
    fixed = {}
    for section, values in resolved.items():
        if not isinstance(values, dict) or section == "sweep":
            continue
        for key, v in values.items():
            param = R.param_key(section, key)
            if param not in swept and param not in FIXED_PARAMS_IGNORED:
                fixed[param] = R.param_text(v)
    return fixed, swept


def parse_overrides(text) -> dict[str, str]:
    """A sweep's ``overrides`` param (``--set`` arguments joined by spaces) → {section.key: value text}.

    Values may hold spaces (``sweep.batch_size=[16, 64]``): each value runs up to the next
    ``section.key=``.
    """
    if not isinstance(text, str) or text.strip() in ("", "none"):
        return {}
    marks = list(re.finditer(r"(?:^|\s)([A-Za-z_]\w*(?:\.[\w\"]+)+)=", text))
    out = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        out[m.group(1)] = text[m.end():nxt.start() if nxt else len(text)].strip()
    return out


def _non_sweep_overrides(text) -> dict[str, str]:
    """The ``--set`` overrides of a sweep outside ``[sweep]``: what makes it a variant."""
    return {k: v for k, v in parse_overrides(text).items()
            if not k.startswith("sweep.") and k not in FIXED_PARAMS_IGNORED}


FACET_EXCLUDED = set(R.SWEPT_INTO.values()) | {"train.full_batch"}  # learning rate, batch size, seed


def _typed(values: pd.Series) -> pd.Series:
    """A facet's param text as numbers where every value is one, else as text."""
    num = pd.to_numeric(values, errors="coerce")
    return num if num.notna().all() else values.astype(str)


def split_variants(runs: pd.DataFrame, sweeps: pd.DataFrame, resolved: dict[str, tuple[str, dict]]) -> list[Variant]:
    """Group finished runs into variants by the fixed settings of the sweep that made them.

    Args:
        runs: FINISHED child runs (``runs_frame``), with ``parent_id``.
        sweeps: the parent sweep runs.
        resolved: sweep run id -> (resolved.toml text, parsed) for the sweeps that have it.

    Returns:
        Variants, the base first (the latest sweep of the file as written; else the one with
        the most runs), then by run count. Runs whose sweep has no resolved config form a
        variant of their own per sweep, labelled so: nothing is dropped.
    """
    groups: dict = {}   # key -> {"fixed", "swept", "sweep_ids", "base", "text", "parsed", "latest"}
    of_sweep: dict[str, object] = {}
    for s in sweeps.sort_values("start_time").to_dict("records"):
        rid = s["run_id"]
        if rid in resolved:
            text, parsed = resolved[rid]
            fixed, swept = _fixed_settings(parsed)
            key = tuple(sorted(fixed.items()))
        else:
            text, parsed, fixed, swept, key = None, None, {}, set(), ("no resolved config", rid)
        g = groups.setdefault(key, {"fixed": fixed, "swept": set(), "sweep_ids": [], "base": False})
        g["swept"] |= swept
        g["sweep_ids"].append(rid)
        g["base"] |= parsed is not None and not _non_sweep_overrides(s.get("params.overrides"))
        g["set"] = _non_sweep_overrides(s.get("params.overrides"))  # the latest sweep's
        g["text"], g["parsed"] = text, parsed   # the latest sweep's
        of_sweep[rid] = key
    orphan = ("no sweep run", "")
    key_of_run = runs["parent_id"].map(lambda p: of_sweep.get(p, orphan)) if not runs.empty else pd.Series(dtype=object)
    if not runs.empty and (key_of_run == orphan).any():
        groups[orphan] = {"fixed": {}, "swept": set(), "sweep_ids": [], "base": False, "text": None, "parsed": None}
    out = []
    for key, g in groups.items():
        mask = key_of_run.map(lambda k: k == key) if not runs.empty else pd.Series(dtype=bool)
        vr = runs[mask.astype(bool)].reset_index(drop=True) if not runs.empty else runs
        if vr.empty and key != orphan and len(groups) > 1 and not g["sweep_ids"]:
            continue
        swept = g["swept"] or _swept_from_runs(vr)
        facets = sorted(p for p in swept - FACET_EXCLUDED if f"params.{p}" in vr)
        vr = vr.copy()
        for f in facets:
            vr[f] = _typed(vr[f"params.{f}"])
        sw = sweeps[sweeps["run_id"].isin(g["sweep_ids"])].reset_index(drop=True)
        out.append(Variant("", dict(g.get("set", {})), g["fixed"], facets, vr, sw, g.get("text"), g.get("parsed"),
                           g["base"]))
    out = [v for v in out if not v.runs.empty or not v.sweeps.empty]
    with_runs = [v for v in out if not v.runs.empty] or out
    bases = [v for v in with_runs if v.base]
    ref = (max(bases, key=lambda v: v.latest_sweep["start_time"]) if bases else
           max(with_runs, key=lambda v: len(v.runs))) if with_runs else None
    for v in out:
        v.base = v is ref and bool(bases)
        if v.base:
            v.overrides = {}
        elif v is not ref and ref is not None and ref.base:
            # what differs from the base sweep, also where the file itself was edited between sweeps
            keys = sorted(set(v.fixed) | set(ref.fixed))
            v.overrides = {**v.overrides, **{k: v.fixed.get(k, "—") for k in keys if v.fixed.get(k) != ref.fixed.get(k)}}
        if not v.fixed and v.runs.shape[0] and v.resolved is None:
            v.overrides = {**v.overrides, "sweep": "no resolved config"}
    out.sort(key=lambda v: (v is not ref, -len(v.runs)))
    used = set()
    for v in out:
        s = "base" if v.base else slug_text(v.label)
        while s in used:
            s += "_"
        used.add(s)
        v.slug = s
    return out


def _swept_from_runs(runs: pd.DataFrame) -> set[str]:
    """Without a resolved config: the section.key params whose values differ between runs."""
    cols = [c for c in runs.columns if c.startswith("params.") and c.count(".") >= 2]
    return {c[len("params."):] for c in cols if runs[c].nunique() > 1}


def slug_text(text: str) -> str:
    """A short folder name for a variant label."""
    s = re.sub(r"[^\w.=-]+", "_", text).strip("_")
    return s[:80] or "variant"


def select_variant(variants: list[Variant], selector: str) -> Variant | None:
    """The variant a ``--variant`` selector names: "base", its slug, or ``key=value`` overrides.

    ``key=value`` pairs (comma-separated) must all match the variant's overrides.
    """
    for v in variants:
        if selector == v.slug or (selector == "base" and v.base):
            return v
    pairs = [p.strip() for p in selector.split(",") if "=" in p]
    if pairs:
        want = dict(p.split("=", 1) for p in pairs)
        want = {k.strip(): v.strip() for k, v in want.items()}
        for v in variants:
            norm = {k: str(x).replace(" ", "") for k, x in v.overrides.items()}
            if all(norm.get(k) == x.replace(" ", "") for k, x in want.items()):
                return v
    return None


def did_you_mean(names: list[str], known: list[str]) -> str:
    """`` (did you mean 'digits-mlp'?)`` for each of ``names`` that is a likely typo of a known
    experiment name; ``""`` when none is."""
    close = [c[0] for n in names if (c := difflib.get_close_matches(n, known, n=1, cutoff=0.6))]
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def load_experiment(uri: str, name: str) -> ExperimentData:
    """Read one experiment: its finished child runs, sweeps, and the variants they form.

    Args:
        uri: MLflow tracking URI.
        name: experiment name (the experiment file's ``name``).

    Returns:
        An ``ExperimentData``; ``runs`` may be empty (the report then says so).

    Raises:
        StoreError: the experiment does not exist in the store.
    """
    exp = store.experiment(uri, name)
    df = runs_frame(store.runs(uri, exp.experiment_id))
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "run_name", "status", "kind", "start_time", "parent_id"])
    kids = df[df["kind"] == R.RUN]
    finished = kids[kids["status"] == "FINISHED"].reset_index(drop=True)
    unfinished = kids[kids["status"] != "FINISHED"]["status"].value_counts().to_dict()
    sweeps = df[df["kind"] == R.SWEEP].reset_index(drop=True)
    resolved = {}
    for rid in sweeps["run_id"]:
        text = store.artifact_text(uri, rid, "resolved.toml")
        if text is None:
            continue
        try:
            resolved[rid] = (text, tomllib.loads(text))
        except tomllib.TOMLDecodeError:
            continue
    variants = split_variants(finished, sweeps, resolved)
    for v in variants:
        v.placement = _placement(uri, v.sweeps)
    return ExperimentData(name, exp.experiment_id, exp.description, uri, finished, sweeps,
                          {str(k): int(v) for k, v in unfinished.items()}, variants)


def _placement(uri: str, sweeps: pd.DataFrame) -> dict | None:
    """Where ``learning_rate = "auto"`` placed the grid: the latest of ``sweeps`` that logged ``auto.json``.

    Only sweeps whose ``placement`` param says ``auto`` are read (one artifact each); an
    unreadable ``auto.json`` counts as no placement.
    """
    import json

    if sweeps.empty or "params.placement" not in sweeps:
        return None
    placed = sweeps[sweeps["params.placement"] == "auto"]
    for rid in placed.sort_values("start_time", ascending=False)["run_id"]:
        text = store.artifact_text(uri, rid, R.AUTO_ARTIFACT)
        if not text:
            continue
        try:
            return json.loads(text)
        except ValueError:
            return None
    return None


def load_curves(uri: str, run_ids, keys=R.CURVE_KEYS, sql: bool | None = None) -> pd.DataFrame:
    """Metric histories of many runs as one tidy, compact frame (``curvestore.compact``).

    Read a chunk of runs at a time (``reads.metric_point_chunks``), each chunk reduced to
    codes before the next one is read: the store's rows as Python tuples (about 0.3 KB a
    point) never pile up; the frame holds about 17 bytes a point. A report reads its curves
    group by group instead (``curvestore.spill``).

    Args:
        uri: MLflow tracking URI.
        run_ids: the runs to read.
        keys: the metric names to read (default: the four loss/gradient curves).
        sql: how to read them (``reads.metric_points``; None: the fastest way).

    Returns:
        Columns ``run_id, key`` (categoricals), ``step`` (int32), ``value`` (float64), one row
        per point, sorted by run, key and step; a point logged twice keeps its latest value;
        non-finite values are dropped.
    """
    ids = pd.Index(sorted(set(run_ids)), dtype=str)  # chunks in run order: one after the other, they stay sorted
    names = curvestore.key_index(keys)
    parts = []
    for rows in store.metric_point_chunks(uri, list(ids), list(names), sql=sql):
        c = curvestore.reduce_chunk(rows)
        parts.append((curvestore.codes(c["run_id"], ids, "run"), curvestore.codes(c["key"], names, "key"),
                      curvestore.steps(c["step"]), c["value"].to_numpy(np.float64)))
    if not any(len(p[0]) for p in parts):
        return curvestore.empty_frame()
    run, key, step, value = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return curvestore.compact(run, key, step, value, ids, names)


def run_config(uri: str, run_id: str) -> dict | None:
    """A run's resolved config (its ``config.json`` artifact), or None when it has none."""
    import json

    text = store.artifact_text(uri, run_id, "config.json")
    return json.loads(text) if text else None
