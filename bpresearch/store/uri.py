"""Which store a tracking URI names: the one module that reads a URI.

The store is ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``DEFAULT_URI``: MLflow's
embedded sqlite store ``mlflow.db`` in the working folder (the Makefile's default is the
same). A ``sqlite:///`` URI is a file on this machine: the store written directly
(``sqlite_backend``), locked with ``flock`` files beside it, its spool and its artifacts
beside it too. Anything else (a server, another SQL database) goes through MLflow's client.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bpresearch.keys import safe_name

DEFAULT_URI = "sqlite:///mlflow.db"
ENV = "MLFLOW_TRACKING_URI"


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``DEFAULT_URI``."""
    return uri or os.environ.get(ENV) or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store; None for any other store."""
    m = re.match(r"sqlite:///(.+)", uri)
    return Path(m.group(1)) if m else None


def is_default(uri: str) -> bool:
    return uri == DEFAULT_URI


def new_artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside a sqlite store (not in the caller's
    folder), ``mlartifacts/<experiment>``; None elsewhere (the server decides)."""
    db = sqlite_path(uri)
    return None if db is None else (db.resolve().parent / "mlartifacts" / safe_name(experiment)).as_uri()


def is_local(artifact_uri: str) -> bool:
    """Whether an artifact location or URI is a folder on this machine (``file:``)."""
    return artifact_uri.startswith("file:")


def local_path(artifact_uri: str) -> Path:
    """The folder of a ``file:`` artifact URI (as MLflow's ``local_file_uri_to_path``)."""
    return Path(url2pathname(urlparse(artifact_uri).path))
