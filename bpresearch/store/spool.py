"""The spool: trained results wait on local disk until the store has them.

Each chunk's records (a whole group's, from Ray) are saved here, atomically, the moment
training returns them and before anything is written to the MLflow store; the file is deleted once every record of it
is FINISHED in the store. If the store fails (or the process dies) the file stays, and the
next ``bpresearch sweep`` of the experiment, or ``bpresearch sync``, writes it first
without training it again.

Where: ``$BPRESEARCH_SPOOL`` if set; beside a sqlite store
(``<store folder>/.bpresearch-spool/``); for any other store
``~/.cache/bpresearch/spool/<store>/``. One folder per experiment
(``keys.safe_name``), one ``.npz`` file per chunk.

File format (numpy ``.npz``, no pickles): ``meta`` is UTF-8 JSON (experiment name and
description, the provenance tags of the process that trained them, and per run its
resolved config, hash, params, curve names, summary and artifacts); run r's j-th curve is
the arrays ``s{r}_{j}`` (steps, int64) and ``v{r}_{j}`` (values, float64), so curves come
back bit for bit.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpresearch.keys import safe_name
from bpresearch.store.record import RunRecord
from bpresearch.store.uri import sqlite_path

VERSION = 1


@dataclass(frozen=True)
class SpooledRun:
    """A run read back from a spool file: what the store needs of it (no config layer here)."""
    config: dict
    hash: str
    name: str


class SpoolError(RuntimeError):
    """A spool file that cannot be read; the message is one line naming it."""


def folder_for(uri: str) -> Path:
    """The spool folder of a store (see the module docstring)."""
    if os.environ.get("BPRESEARCH_SPOOL"):
        return Path(os.environ["BPRESEARCH_SPOOL"])
    db = sqlite_path(uri)
    if db is not None:
        return db.resolve().parent / ".bpresearch-spool"
    return Path.home() / ".cache" / "bpresearch" / "spool" / safe_name(uri)


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Spool:
    """Saved groups of one store, by experiment."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, experiment: str) -> Path:
        return self.root / safe_name(experiment)

    def save(self, experiment: str, description: str, records: list[RunRecord], tags: dict | None = None) -> Path:
        """Write ``records`` as one file, atomically (temp file, fsync, rename); its path."""
        folder = self.folder(experiment)
        folder.mkdir(parents=True, exist_ok=True)
        arrays, runs = {}, []
        for r, rec in enumerate(records):
            keys = list(rec.curves)
            for j, key in enumerate(keys):
                steps, values = rec.curves[key]
                arrays[f"s{r}_{j}"] = np.asarray(steps, np.int64)
                arrays[f"v{r}_{j}"] = np.asarray(values, np.float64)
            runs.append({"config": rec.run.config, "hash": rec.run.hash, "name": rec.run.name, "group": rec.group,
                         "params": rec.params, "curves": keys, "summary": rec.summary, "artifacts": rec.artifacts})
        meta = {"version": VERSION, "experiment": experiment, "description": description, "tags": tags or {},
                "runs": runs}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
        tmp, final = folder / f".{stem}.tmp", folder / f"{stem}.npz"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(folder)
        return final

    def pending(self, experiment: str | None = None) -> list[Path]:
        """Saved group files, oldest first: of one experiment, or of all."""
        folders = [self.folder(experiment)] if experiment is not None else \
            (sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else [])
        return sorted((p for f in folders if f.is_dir() for p in f.glob("*.npz")), key=lambda p: p.name)

    @staticmethod
    def load(path: Path) -> tuple[dict, list[RunRecord]]:
        """(meta, records) of a saved group, exactly as saved."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("version") != VERSION:
                    raise SpoolError(f"{path}: spool format {meta.get('version')!r}, expected {VERSION}")
                records = [RunRecord(SpooledRun(e["config"], e["hash"], e.get("name", e["hash"][:12])), e["params"],
                                     {key: (z[f"s{r}_{j}"], z[f"v{r}_{j}"]) for j, key in enumerate(e["curves"])},
                                     e["summary"], e["artifacts"], group=e.get("group", ""))
                           for r, e in enumerate(meta["runs"])]
        except SpoolError:
            raise
        except Exception as e:  # noqa: BLE001 - any damage reads the same to the user
            raise SpoolError(f"{path}: cannot read saved results ({type(e).__name__}: {e})") from None
        return meta, records

    @staticmethod
    def discard(path: Path):
        """Delete a saved group once the store holds it."""
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    @staticmethod
    def set_aside(path: Path) -> Path:
        """Rename a damaged file so that it no longer blocks the experiment (``.damaged``)."""
        target = path.with_suffix(".damaged")
        os.replace(path, target)
        return target
