"""One sweep at a time per experiment and store: a second one waits.

A sweep holds the experiment's lease from before it reads which configurations are finished
until its parent run is closed. A second ``bpresearch sweep`` of the same experiment into the
same store prints one line ("… is being swept by pid N on HOST since …; waiting") and waits;
when the lease is free it reads the store again and trains only what is still missing (often
nothing). So two sweeps never log the same configuration twice.

- sqlite store: an exclusive ``flock`` on ``<spool>/<experiment>/.lock``; the kernel releases
  it when the holder exits, even after ``kill -9``.
- any other store (a tracking server): a lease in the store, the experiment tag
  ``bpresearch.lease`` (owner, host, pid, heartbeat), renewed every ``HEARTBEAT_S``. A lease
  whose heartbeat is older than ``TTL_S``, or whose pid is dead on this host, has expired and
  is taken over. Taking it is write, wait ``SETTLE_S``, read back: of two sweeps that wrote
  at once, only the one whose write was last proceeds.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

TAG = "bpresearch.lease"
TTL_S = 60.0
HEARTBEAT_S = 15.0
SETTLE_S = 1.0
POLL_S = 2.0


def _since(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@contextmanager
def file_lock(path: Path, name: str, out):
    """Hold an exclusive flock on ``path``; wait (saying so once) while another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            print(f"{name}: is being swept by {holder}; waiting for it to finish (Ctrl-C to stop).",
                  file=out, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {_since(time.time())}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive_here(lease: dict) -> bool:
    """False when the holder ran on this host and its pid is gone."""
    if lease.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, KeyError):
        return True
    return True


def expired(lease: dict | None, now: float) -> bool:
    return not lease or now - float(lease.get("heartbeat", 0)) > TTL_S or not _alive_here(lease)


@contextmanager
def store_lease(get, put, name: str, out, sleep=time.sleep, clock=time.time):
    """Hold the lease kept in the store through ``get() -> str`` and ``put(str)``.

    ``get``/``put`` read and write the experiment's ``bpresearch.lease`` tag ("" when free).
    """
    me = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "since": clock()}
    said = False
    while True:
        try:
            lease = json.loads(get() or "null")
        except ValueError:
            lease = None
        if expired(lease, clock()):
            put(json.dumps({**me, "heartbeat": clock()}))
            sleep(SETTLE_S)
            try:
                mine = json.loads(get() or "null")
            except ValueError:
                mine = None
            if mine and mine.get("owner") == me["owner"]:
                break
            continue
        if not said:
            print(f"{name}: is being swept by pid {lease.get('pid')} on {lease.get('host')} since "
                  f"{_since(float(lease.get('since', 0)))}; waiting for it to finish (Ctrl-C to stop).",
                  file=out, flush=True)
            said = True
        sleep(POLL_S)

    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            try:
                put(json.dumps({**me, "heartbeat": clock()}))
            except Exception:  # noqa: BLE001 - the sweep itself reports a failing store
                pass

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        try:
            current = json.loads(get() or "null")
            if current and current.get("owner") == me["owner"]:
                put("")
        except Exception:  # noqa: BLE001 - an unreleased lease expires after TTL_S
            pass
