"""Where bpresearch keeps what it can rebuild: compiled programs and the digits split.

``$BPRESEARCH_CACHE`` if set, else ``~/.cache/bpresearch``. Everything in it is derived
(deleting the folder costs time, never results): JAX's persistent compilation cache in
``jax/`` and each digits train/test split in ``data/``. A file here is written to a
temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def root() -> Path:
    return Path(os.environ.get("BPRESEARCH_CACHE") or Path.home() / ".cache" / "bpresearch")


def load_arrays(name: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under ``name``, or None when absent or unreadable (then rebuilt)."""
    path = root() / "data" / name
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: the caller rebuilds it
        return None


def save_arrays(name: str, arrays: dict[str, np.ndarray]):
    """Save ``arrays`` under ``name`` atomically; a cache that cannot be written is skipped."""
    folder = root() / "data"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, folder / name)
    except OSError:
        pass
