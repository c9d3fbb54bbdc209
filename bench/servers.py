"""Throwaway servers on 127.0.0.1 for the tests and the bench: an ``mlflow server`` and a
PostgreSQL cluster, each started in its own process group and stopped by it.

Shared by ``tests/`` (through ``tests/storeview.py``) and ``bench/measure.py``: one way to
start them, so that what the bench measures is what the tests exercise.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready, proc, what: str, log: Path, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {seconds:.0f} s: {log.read_text()[-2000:]}")
        time.sleep(0.3)


def _stop(proc, sig=signal.SIGTERM):
    os.killpg(proc.pid, sig)  # the process and what it started (uvicorn's worker, postgres' backends)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def mlflow_server(backend_uri: str, folder: Path):
    """``mlflow server`` on a free port of 127.0.0.1, as ``make server`` starts it; stopped by its PID."""
    port, log = free_port(), folder / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                                 backend_uri, "--artifacts-destination", str(folder / "artifacts"),
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def ready():
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait(ready, proc, "mlflow server", log)
        yield base
    finally:
        _stop(proc)


def postgres_missing() -> str | None:
    """Why no PostgreSQL server can be started here, or None."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and not shutil.which("initdb"):
        return "no PostgreSQL server installed (Debian: apt-get install postgresql; .ci/run does)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "no PostgreSQL driver: pip install -e '.[db]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1 in a temporary folder (trust auth, no fsync)."""

    def __init__(self, port: int):
        self.port = port

    def database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URI."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def postgres_server():
    """Debian's PostgreSQL, run as the postgres user when we are root (it refuses root)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    bindir = Path(binaries[-1]) if binaries else Path(shutil.which("initdb")).parent
    user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's folders: those are 0700 root's, which the postgres user cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="bp-pg-"))
    if user:
        pw = pwd.getpwnam(user)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    log = folder / "server.log"
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync"], user=user, check=True, capture_output=True, timeout=120)
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen([str(bindir / "postgres"), "-D", str(folder / "data"), "-p", str(port),
                                     "-k", str(folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                                    user=user, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            import psycopg2
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                 connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                return False

        try:
            _wait(ready, proc, "postgres", log, 60)
            yield Postgres(port)
        finally:
            _stop(proc, signal.SIGINT)  # PostgreSQL's fast shutdown
    finally:
        shutil.rmtree(folder, ignore_errors=True)
