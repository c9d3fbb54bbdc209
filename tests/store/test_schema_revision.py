"""A store at a schema revision the installed MLflow does not expect fails at once, in one line.

The store is real: made by the installed MLflow, then its ``alembic_version`` set to a
revision no installed migration script names (as a later MLflow's upgrade leaves it), or to
an older one. MLflow refuses either with an INTERNAL_ERROR, which is otherwise transient.
"""

import shutil
import sqlite3
import time
from types import SimpleNamespace

import pytest

from bpresearch.cli import main
from bpresearch.store import retry, sqlstore
from bpresearch.store.mlflow_backend import client
from bpresearch.store.tracking import open_store

NEWER = "f4a9b2c7d1e6"   # a revision a later MLflow might write; no installed script names it


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    db = tmp_path_factory.mktemp("fresh") / "mlflow.db"
    client(f"sqlite:///{db}")
    return db


def at_revision(fresh, tmp_path, revision: str) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copy(fresh, db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    return f"sqlite:///{db}"


def test_the_planted_revision_is_unknown_and_the_head_is_known():
    assert NEWER not in sqlstore.known_revisions()
    assert sqlstore.installed_head() in sqlstore.known_revisions()


def test_a_newer_store_is_not_retried(fresh, tmp_path):
    uri = at_revision(fresh, tmp_path, NEWER)
    sleeps = []
    with pytest.raises(retry.StoreFailure) as e:
        retry.call(lambda: open_store(uri), "connecting", retry.is_transient, budget=30, sleep=sleeps.append)
    assert sleeps == [], "a permanent error: no retry"
    line = str(e.value)
    assert "\n" not in line and NEWER in line and sqlstore.installed_head() in line
    assert "newer" in line and "pip install -U mlflow" in line and "out-of-date" not in line


def test_an_older_store_says_how_to_migrate(fresh, tmp_path):
    old = sorted(sqlstore.known_revisions() - {sqlstore.installed_head()})[0]
    uri = at_revision(fresh, tmp_path, old)
    with pytest.raises(Exception) as e:
        client(uri)
    assert not retry.is_transient(e.value)
    line = retry.schema_mismatch(e.value)
    assert old in line and "older" in line and "mlflow db upgrade" in line


def test_other_errors_are_no_schema_mismatch():
    assert retry.schema_mismatch(ValueError("a bug, not the store")) is None


def test_sweep_into_a_newer_store_exits_at_once_with_one_line(fresh, tmp_path, linear_example, monkeypatch, capsys):
    monkeypatch.delenv("BPRESEARCH_STORE_RETRY_S", raising=False)   # the default budget: 30 s
    monkeypatch.setenv("BPRESEARCH_SPOOL", str(tmp_path / "spool"))
    uri = at_revision(fresh, tmp_path, NEWER)
    t0 = time.monotonic()
    rc = main(["sweep", str(linear_example), "--tracking-uri", uri, "--set", "train.steps=5",
               "--set", "sweep.seeds=1"])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1, err   # docs/guarantees.md: 3, the store failed
    assert NEWER in err and "attempts" not in err and "Traceback" not in err, err
    assert elapsed < 15, "no 30 s of retrying"
    assert not (tmp_path / "spool").exists(), "nothing was trained"


def test_report_on_a_newer_store_is_one_line(fresh, tmp_path, capsys):
    from analysis import report

    uri = at_revision(fresh, tmp_path, NEWER)
    rc = report.main(SimpleNamespace(experiments=[], tracking_uri=uri, out=str(tmp_path / "r"), variant=None))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and NEWER in err, err
