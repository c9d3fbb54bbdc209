"""Which stores are written directly, and a store at another schema revision fails at once, in one line.

The store is real: made by the installed MLflow, then its ``alembic_version`` set to a
revision no installed migration script names (as a later MLflow's upgrade leaves it: MLflow
3.18's head under 3.17, or one no release has), or to an older one. MLflow refuses either
with an INTERNAL_ERROR, which is otherwise transient; a newer one is refused before MLflow
is imported.
"""

import shutil
import sqlite3
from types import SimpleNamespace

import pytest

from bpresearch.cli import main
from bpresearch.store import retry, sqlstore
from bpresearch.store.mlflow_backend import MlflowStore, client
from bpresearch.store.sqlite_backend import SqliteStore
from bpresearch.store.tracking import open_store

FUTURE = "0f1e2d3c4b5a"   # a revision no MLflow release has
# The revisions newer than the installed MLflow: a later release's that sqlstore knows (3.18's
# under the pinned 3.17), then one nobody knows. NEWER is the first.
NEWERS = [r for r in sqlstore.SCHEMA_REVISIONS if r not in sqlstore.known_revisions()] + [FUTURE]
NEWER = NEWERS[0]


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


def test_the_planted_revisions_are_unknown_and_the_head_is_known():
    assert not set(NEWERS) & sqlstore.known_revisions()
    assert sqlstore.installed_head() in sqlstore.known_revisions()


def test_the_installed_mlflows_schema_is_written_directly(fresh, tmp_path, capsys):
    """The pinned MLflow's schema and the newest release's (make test-latest) are both known."""
    assert sqlstore.installed_head() in sqlstore.SCHEMA_REVISIONS
    uri = at_revision(fresh, tmp_path, sqlstore.installed_head())
    assert isinstance(open_store(uri), SqliteStore) and sqlstore.why_not_direct(tmp_path / "mlflow.db") is None
    assert capsys.readouterr().err == ""


def test_a_schema_the_direct_path_does_not_know_is_said_in_one_line(fresh, tmp_path, monkeypatch, capsys):
    """As under an MLflow release later than sqlstore knows: its client writes, and one line says why."""
    head = sqlstore.installed_head()
    uri = at_revision(fresh, tmp_path, head)
    monkeypatch.delitem(sqlstore.SCHEMA_REVISIONS, head)
    assert isinstance(open_store(uri), MlflowStore)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLflow's client" in err and f"store schema {head} (MLflow " in err, err
    assert "is not one the direct path knows" in err and all(r in err for r in sqlstore.SCHEMA_REVISIONS), err


@pytest.mark.parametrize("newer", NEWERS)
def test_a_newer_store_is_not_retried(fresh, tmp_path, newer):
    uri = at_revision(fresh, tmp_path, newer)
    sleeps = []
    with pytest.raises(retry.StoreFailure) as e:
        retry.call(lambda: open_store(uri), "connecting", retry.is_transient, budget=30, sleep=sleeps.append)
    assert sleeps == [], "a permanent error: no retry"
    line = str(e.value)
    assert "\n" not in line and newer in line and sqlstore.installed_head() in line
    assert "newer" in line and "out-of-date" not in line and "NewerSchema" not in line
    release = sqlstore.SCHEMA_REVISIONS.get(newer)
    assert (f"written by MLflow {release}" in line and f"mlflow>={release}" in line if release else
            "written by a later MLflow" in line and "pip install -U mlflow" in line), line


def test_mlflows_own_refusal_of_a_newer_store_reads_the_same(fresh, tmp_path):
    """Where MLflow's client meets the store first (reads), its refusal gives the same line."""
    uri = at_revision(fresh, tmp_path, FUTURE)
    with pytest.raises(Exception) as e:
        client(uri)
    assert not retry.is_transient(e.value)
    assert retry.schema_mismatch(e.value) == sqlstore.newer_schema(FUTURE, sqlstore.installed_head())


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
    rc = main(["sweep", str(linear_example), "--tracking-uri", uri, "--set", "train.steps=5",
               "--set", "sweep.seeds=1"])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1, err   # docs/guarantees.md: 3, the store failed
    assert NEWER in err and "attempts" not in err and "Traceback" not in err, err
    assert not (tmp_path / "spool").exists(), "nothing was trained"


def test_report_on_a_newer_store_is_one_line(fresh, tmp_path, capsys):
    from analysis import report

    uri = at_revision(fresh, tmp_path, NEWER)
    rc = report.main(SimpleNamespace(experiments=[], tracking_uri=uri, out=str(tmp_path / "r"), variant=None))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and NEWER in err, err
