"""Bounded retries for the tracking store.

A transient store error (server unreachable or answering 5xx, connection reset, a sqlite
store busy or locked) is retried with exponential backoff (0.5 s, 1 s, 2 s, … at most 5 s
apart) for ``BPRESEARCH_STORE_RETRY_S`` seconds (default 30), measured from the first
failure of that operation; then, like any other store error, it is a ``StoreFailure``.
Which errors are transient: ``is_transient``. A store at a schema revision the installed
MLflow does not expect is not: it fails at once, in one line naming the revision and what
to do (``schema_mismatch``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import time
from typing import Callable, TypeVar

T = TypeVar("T")
DEFAULT_BUDGET_S = 30.0


class StoreFailure(RuntimeError):
    """The store failed (after retries for transient errors); the message is one line."""


def budget_s() -> float:
    """Seconds of retrying per operation: ``$BPRESEARCH_STORE_RETRY_S``, else 30."""
    try:
        return max(0.0, float(os.environ.get("BPRESEARCH_STORE_RETRY_S", DEFAULT_BUDGET_S)))
    except ValueError:
        return DEFAULT_BUDGET_S


def describe(exc: BaseException) -> str:
    """One line for an exception: its type and the first line of its message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def call(fn: Callable[[], T], what: str, transient: Callable[[BaseException], bool],
         budget: float | None = None, sleep=time.sleep, clock=time.monotonic, on_retry=None) -> T:
    """``fn()``, retried while it raises transient errors and ``budget`` seconds have not passed.

    Args:
        fn: the store operation (retrying it must be safe: see the runner for run writes).
        what: what the operation does, for the error message ("writing run lr=0.1 bs=8 seed=0").
        transient: tells a transient error from a permanent one.
        budget: seconds of retrying (default ``budget_s()``).
        on_retry: optional ``on_retry(attempt, exc, delay)`` before each sleep.
    Raises:
        StoreFailure: a permanent error, or a transient one that outlived the budget.
    """
    budget = budget_s() if budget is None else budget
    start, delay, attempt = None, 0.5, 0
    while True:
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit, StoreFailure):
            raise
        except Exception as e:  # noqa: BLE001 - classified below
            attempt += 1
            start = clock() if start is None else start
            if not transient(e):
                raise StoreFailure(f"{what}: {schema_mismatch(e) or describe(e)}") from e
            left = budget - (clock() - start)
            if left <= 0:
                raise StoreFailure(f"{what}: still failing after {attempt} attempts in {budget:g} s "
                                   f"({describe(e)})") from e
            wait = min(delay, left)
            if on_retry:
                on_retry(attempt, e, wait)
            sleep(wait)
            delay = min(delay * 2, 5.0)


_SCHEMA = re.compile(r"database schema \(found version (\w+), but expected (\w+)\)")


def _chain(exc: BaseException) -> list[BaseException]:
    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def schema_mismatch(exc: BaseException) -> str | None:
    """One line for MLflow's refusal of a store at another schema revision ("Detected
    out-of-date database schema", said also of a newer one): which revision, what to do.
    None for any other error."""
    from bpresearch.store import sqlstore

    chain = _chain(exc)
    newer = next((e for e in chain if isinstance(e, sqlstore.NewerSchema)), None)
    if newer is not None:
        return str(newer)
    m = next((m for e in chain if (m := _SCHEMA.search(str(e)))), None)
    if m is None:
        return None
    found, expected = m.groups()
    if found in sqlstore.known_revisions():
        return (f"the store is at schema revision {found}, older than {expected} that {sqlstore.mlflow_version()} "
                f"expects: back it up, then migrate it with `mlflow db upgrade <tracking URI>`")
    return sqlstore.newer_schema(found, expected)


_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED",
                    "ABORTED"}


def is_transient(exc: BaseException) -> bool:
    """A store error worth retrying: server unreachable, reset or 5xx; a sqlite store busy or locked.

    A database error decides by its own message (``database is locked`` is transient; a full
    disk or a read-only database is not), whatever MLflow wrapped it in. A store at another
    schema revision (``schema_mismatch``) is not, though MLflow reports it as INTERNAL_ERROR,
    nor is one newer than the installed MLflow knows (``sqlstore.NewerSchema``).
    """
    from bpresearch.store.sqlstore import NewerSchema

    chain = _chain(exc)
    if any(isinstance(e, NewerSchema) or _SCHEMA.search(str(e)) for e in chain):
        return False   # decided before MLflow is imported: a newer store fails in well under a second
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")   # not imported: no sqlalchemy error to look for
    database = (sqlite3.OperationalError,) + ((sqlalchemy_exc.OperationalError,) if sqlalchemy_exc else ())
    for e in chain:
        if isinstance(e, database):
            text = str(e).lower()
            return "locked" in text or "busy" in text
    import requests
    from mlflow.exceptions import MlflowException

    for e in chain:
        if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                          TimeoutError)):
            return True
    for e in chain:
        if isinstance(e, MlflowException):
            code = re.search(r"failed with error code (\d+)", str(e.message))
            if code:  # a non-JSON HTTP error answer
                return int(code.group(1)) >= 500 or int(code.group(1)) == 429
            if str(e.message).startswith("API request to") and "failed with" in str(e.message):
                return True  # connection-level failure (refused, reset, timed out, too many 5xx)
            return e.error_code in _TRANSIENT_CODES
    return False
