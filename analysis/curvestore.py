"""Curves a report reads group by group: compact frames, and a spill that holds one group at a time.

A curve point is held as about 17 bytes (``compact``): the run id and the metric's key as
pandas categoricals (an integer code each), the step as int32 and the value as float64,
bit for bit the store's. Text columns would cost about 75 bytes a point.

A report reads its curves from the store once (``spill``): one pass over the store, a chunk
of runs at a time (``reads.metric_point_chunks``), each chunk reduced (``compact``) and its
points appended to the files of the groups they belong to, in a temporary folder. A group's
curves are read back from its files when a section asks for them, and only the last group
read is kept: the report holds one group's points at a time, whatever the store's size.

Both sources answer ``frame(run_ids)`` (the points of those runs, sorted by run, key and
step) and ``count(run_ids)``; ``Frame`` wraps a frame already in memory (``load.load_curves``).
"""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from bpresearch.store import reads as store

COLUMNS = ("run_id", "key", "step", "value")
FILES = {"run": np.int32, "key": np.int16, "step": np.int32, "value": np.float64}   # a part's columns on disk
STEP_MAX = np.iinfo(np.int32).max


def reduce_chunk(rows: list[tuple]) -> pd.DataFrame:
    """One chunk of ``reads.POINT`` tuples (every point of its runs): finite values, sorted by
    run, key and step, the latest of a point logged twice; text ids, as read."""
    df = pd.DataFrame(rows, columns=list(store.POINT))
    del rows
    df["value"] = df["value"].astype(float)
    df = df[np.isfinite(df["value"])]
    return (df.sort_values(["run_id", "key", "step", "timestamp"])
              .drop_duplicates(["run_id", "key", "step"], keep="last")
              .drop(columns="timestamp").reset_index(drop=True))


def codes(values: pd.Series, categories: pd.Index, what: str) -> np.ndarray:
    """The position of each of ``values`` in ``categories`` (a sorted index of every value)."""
    out = pd.Categorical(values, categories=categories).codes
    if len(out) and out.min() < 0:
        raise ValueError(f"curve points of a {what} that was not asked for")
    return out


def steps(values) -> np.ndarray:
    """Logged steps as int32 (a run of two billion steps is out of reach)."""
    s = np.asarray(values, dtype=np.int64)
    if len(s) and (s.min() < 0 or s.max() > STEP_MAX):
        raise ValueError(f"a curve step outside 0 … {STEP_MAX}")
    return s.astype(np.int32)


def compact(run: np.ndarray, key: np.ndarray, step: np.ndarray, value: np.ndarray,
            run_ids: pd.Index, keys: pd.Index) -> pd.DataFrame:
    """The tidy curve frame (``run_id, key, step, value``) from codes into ``run_ids`` and ``keys``.

    ``run_id``'s categories are only the runs present, so a frame of a few runs does not carry
    the store's every id."""
    present = np.unique(run)
    local = np.searchsorted(present, run)
    return pd.DataFrame({
        "run_id": pd.Categorical.from_codes(local, categories=run_ids[present]),
        "key": pd.Categorical.from_codes(key, categories=keys),
        "step": step.astype(np.int32, copy=False),
        "value": value.astype(np.float64, copy=False)}, copy=False)   # the arrays themselves: no second copy


def empty_frame() -> pd.DataFrame:
    return compact(np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int32), np.zeros(0),
                   pd.Index([], dtype=str), pd.Index([], dtype=str))


def key_index(keys) -> pd.Index:
    """The keys a read asks for, sorted (a frame sorted by key sorts them as text)."""
    return pd.Index(sorted(set(keys)), dtype=str)


def is_sorted(c: pd.DataFrame, block: int = 1 << 20) -> bool:
    """Whether curves are already sorted by run, key and step (``load.load_curves``' frames are);
    checked a block of rows at a time, so it holds a few bytes a row of a block, not of the frame."""
    cols = [c[k].cat.codes.to_numpy() if isinstance(c[k].dtype, pd.CategoricalDtype) and
            c[k].cat.categories.is_monotonic_increasing else None for k in ("run_id", "key")]
    if any(x is None for x in cols):
        return False
    run, key, step = cols[0], cols[1], c["step"].to_numpy()
    for i in range(0, max(len(c) - 1, 0), block):
        j = slice(i, min(i + block + 1, len(c)))
        r, k, s = (np.diff(x[j].astype(np.int64)) for x in (run, key, step))
        if not np.all((r > 0) | ((r == 0) & ((k > 0) | ((k == 0) & (s > 0))))):
            return False
    return True


def factorized(col: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """(codes, values) of a column: a categorical's own (no copy of a group's points), else ``pd.factorize``'s."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), col.cat.categories
    return pd.factorize(col)


def trajectory_hashes(t: pd.DataFrame) -> dict:
    """Run id -> the hash of its keys as one text, its steps as int64 and its values as float64, of curves
    sorted by run, key and step: ``uncertainty.fingerprints``' hash, from the frame's arrays (no frame per run)."""
    run, ids = factorized(t["run_id"])
    key, names = factorized(t["key"])
    names = [str(k) for k in names]
    n = len(t)
    steps, values = t["step"].to_numpy(), t["value"].to_numpy(np.float64)   # steps widened run by run
    starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
    ends = np.r_[starts[1:], n]
    seg = np.flatnonzero(np.r_[True, (run[1:] != run[:-1]) | (key[1:] != key[:-1])])   # one per run and key
    seg_len, seg_key, seg_run = np.diff(np.r_[seg, n]), key[seg], run[seg]
    seg_of = np.searchsorted(seg_run, np.arange(len(starts) + 1))   # each run's first segment
    out = {}
    for i, (a, b) in enumerate(zip(starts, ends)):
        text = "".join(names[k] * int(m) for k, m in zip(seg_key[seg_of[i]:seg_of[i + 1]],
                                                         seg_len[seg_of[i]:seg_of[i + 1]]))
        h = hashlib.sha1(text.encode())
        h.update(steps[a:b].astype(np.int64).tobytes())
        h.update(values[a:b].tobytes())
        out[str(ids[run[a]])] = h
    return out


class Frame:
    """Curves already in memory, as a source: ``frame(run_ids)`` selects rows, the last selection kept."""

    def __init__(self, curves: pd.DataFrame):
        self.curves = curves
        self._last: tuple[frozenset, pd.DataFrame] | None = None

    @property
    def points(self) -> int:
        return len(self.curves)

    def frame(self, run_ids) -> pd.DataFrame:
        ids = frozenset(run_ids)
        if self._last is None or self._last[0] != ids:
            c = self.curves
            self._last = (ids, c[c["run_id"].isin(ids)] if not c.empty else c)
        return self._last[1]

    def count(self, run_ids) -> int:
        c = self.curves
        return int(c["run_id"].isin(set(run_ids)).sum()) if not c.empty else 0


def source(curves) -> Frame | Spill:
    """A curve source from either a frame (``load.load_curves``) or a ``Spill``."""
    return curves if isinstance(curves, (Frame, Spill)) else Frame(curves)


class Spill:
    """A report's curves on local disk, one set of files per part (a group of runs); read back a part at a time.

    ``reads`` counts the passes over the store (one); ``largest`` the most points of one frame
    handed out; ``peak_held`` the most points of the frames handed out that were alive at once.
    """

    def __init__(self, folder: Path, parts: list, keys):
        self.folder = Path(folder)
        self.run_ids = pd.Index(sorted({r for p in parts for r in p}), dtype=str)
        self.keys = key_index(keys)
        self.part_of = np.full(len(self.run_ids), -1, dtype=np.int64)
        for i, p in enumerate(parts):
            self.part_of[self.run_ids.get_indexer(list(p))] = i
        self.sizes = np.bincount(self.part_of, minlength=len(parts)) if len(parts) else np.zeros(0, np.int64)
        self.per_run = np.zeros(len(self.run_ids), dtype=np.int64)   # points of each run
        self.reads = 0
        self.largest = self.held = self.peak_held = 0
        self._cache: tuple[int, pd.DataFrame] | None = None
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def points(self) -> int:
        return int(self.per_run.sum())

    def _path(self, part: int, column: str) -> Path:
        return self.folder / f"{part}.{column}"

    def add(self, chunk: pd.DataFrame):
        """Append a reduced chunk (``reduce_chunk``) to its parts' files; its runs appear in no later chunk."""
        if chunk.empty:
            return
        run = codes(chunk["run_id"], self.run_ids, "run").astype(np.int32)
        cols = {"run": run, "key": codes(chunk["key"], self.keys, "key").astype(np.int16),
                "step": steps(chunk["step"]), "value": chunk["value"].to_numpy(np.float64)}
        np.add.at(self.per_run, run, 1)
        part = self.part_of[run]
        order = np.argsort(part, kind="stable")   # each part's points stay in run, key, step order
        bounds = np.flatnonzero(np.diff(part[order])) + 1
        for rows in np.split(order, bounds):
            for name, values in cols.items():
                with open(self._path(int(part[rows[0]]), name), "ab") as fh:
                    fh.write(np.ascontiguousarray(values[rows]).tobytes())

    def _load(self, part: int) -> pd.DataFrame:
        if not (self._path(part, "run")).exists():
            return empty_frame()
        cols = {name: np.fromfile(self._path(part, name), dtype=kind) for name, kind in FILES.items()}
        return compact(cols["run"], cols["key"], cols["step"], cols["value"], self.run_ids, self.keys)

    def _handed(self, df: pd.DataFrame) -> pd.DataFrame:
        """Count a frame handed out while it lives."""
        n = len(df)
        self.largest = max(self.largest, n)
        self.held += n
        self.peak_held = max(self.peak_held, self.held)
        weakref.finalize(df, self._release, n)
        return df

    def _release(self, n: int):
        self.held -= n

    def _part(self, part: int) -> pd.DataFrame:
        if self._cache is None or self._cache[0] != part:
            self._cache = None   # the last group goes before the next one is read
            self._cache = (part, self._handed(self._load(part)))
        return self._cache[1]

    def _positions(self, run_ids) -> np.ndarray:
        pos = self.run_ids.get_indexer(pd.Index(list(dict.fromkeys(run_ids)), dtype=str))
        return pos[pos >= 0]

    def frame(self, run_ids) -> pd.DataFrame:
        """The points of ``run_ids`` (sorted by run, key and step): a whole part from the cache, else
        the parts that hold them, filtered."""
        pos = self._positions(run_ids)
        parts = np.unique(self.part_of[pos])
        if len(parts) == 1 and len(pos) == self.sizes[parts[0]]:
            return self._part(int(parts[0]))
        if len(parts) == 0:
            return empty_frame()
        ids = set(self.run_ids[pos])
        picked = [df[df["run_id"].isin(ids)] for df in (self._load(int(p)) for p in parts)]
        out = pd.concat(picked, ignore_index=True) if len(picked) > 1 else picked[0].reset_index(drop=True)
        return self._handed(out.sort_values("run_id", kind="stable", ignore_index=True) if len(picked) > 1 else out)

    def count(self, run_ids) -> int:
        return int(self.per_run[self._positions(run_ids)].sum())


def spill(uri: str, parts: list, keys, folder: Path, sql: bool | None = None) -> Spill:
    """Read the curves ``keys`` of the runs in ``parts`` (lists of run ids, disjoint) from the store once,
    into a ``Spill`` under ``folder`` (which the caller removes)."""
    out = Spill(folder, parts, keys)
    out.reads += 1
    for rows in store.metric_point_chunks(uri, list(out.run_ids), list(out.keys), sql=sql):
        out.add(reduce_chunk(rows))
    return out
