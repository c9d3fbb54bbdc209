"""The spool, bounded retries, the one-sweep lease and safe names, unit by unit."""

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bpresearch.keys import safe_name
from bpresearch.run import records, sweep
from bpresearch.spec import experiment
from bpresearch.store import lease, retry
from bpresearch.store.spool import Spool, SpoolError, folder_for

# ---------------------------------------------------------------- safe names
HOSTILE = ["..", ".", "../../etc", "a/b", "a_b", "/abs", "-rf", "--help", ".hidden", "", " ", "a\nb", "ü/é",
           "x" * 300, "é" * 200, "con", "a\\b", "\x00", "名前/..", "-"]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_name_is_one_harmless_component(name, tmp_path):
    s = safe_name(name)
    assert s and "/" not in s and "\\" not in s and "\x00" not in s
    assert s not in (".", "..") and not s.startswith(("-", "."))
    assert len(s.encode()) <= 100
    p = (tmp_path / s)
    p.mkdir()  # a real, creatable folder directly under tmp_path
    assert p.resolve().parent == tmp_path.resolve()


def test_safe_names_are_stable_and_distinct():
    assert safe_name("digits-mlp") == "digits-mlp"          # safe names are kept: folders do not move
    assert safe_name("seed-graph.v2") == "seed-graph.v2"
    assert len({safe_name(n) for n in HOSTILE}) == len(HOSTILE)
    assert safe_name("a/b") == safe_name("a/b") != safe_name("a_b")


# ---------------------------------------------------------------- the spool
@pytest.fixture(scope="module")
def group_records(tmp_path_factory):
    """Real records of a real group, with a diverged run (truncated curves, non-finite summaries)."""
    tmp = tmp_path_factory.mktemp("g")
    path = tmp / "e.toml"
    path.write_text('name = "spool"\n[data]\nsource = "teacher"\nn_train = 16\n[model]\nkind = "neuron"\n'
                    '[train]\nsteps = 12\neval_every = 3\ntargets = [0.5]\n[sweep]\nlearning_rate = [0.1, 1e6]\n'
                    'seeds = 2\n')
    exp = experiment.load(path)
    runs = exp.runs
    res = sweep.run_group(runs[0].config, [sweep.member_of(r.config) for r in runs], exp.dataset(runs[0].config))
    recs = records.records(runs, res)
    assert any(r.summary["diverged"] for r in recs)
    return recs


def test_spool_round_trips_records_bit_for_bit(group_records, tmp_path):
    sp = Spool(tmp_path / "spool")
    recs = group_records
    recs[0].summary["odd"] = math.nan  # non-finite summaries survive as they are
    recs[0].summary["big"] = math.inf
    path = sp.save("a/../b", "desc", recs)
    assert path.parent.parent == tmp_path / "spool" and path.suffix == ".npz"
    assert not list(path.parent.glob(".*.tmp")), "the temp file is renamed, not left behind"
    assert sp.pending("a/../b") == [path] and sp.pending() == [path] and sp.pending("other") == []
    meta, back = sp.load(path)
    assert meta["experiment"] == "a/../b" and meta["description"] == "desc"
    for a, b in zip(recs, back):
        assert b.run.hash == a.run.hash and b.run.config == a.run.config and b.run.name == a.run.name
        assert b.params == a.params and b.artifacts == a.artifacts
        assert list(b.curves) == list(a.curves)
        for key, (steps, values) in a.curves.items():  # same steps, same float64 bits
            assert b.curves[key][0].dtype == np.int64 and b.curves[key][1].dtype == np.float64
            assert np.array_equal(b.curves[key][0], steps) and b.curves[key][1].tobytes() == values.tobytes()
        assert json.dumps(b.summary) == json.dumps(a.summary)
    sp.discard(path)
    assert sp.pending() == []
    del recs[0].summary["odd"], recs[0].summary["big"]


def test_damaged_spool_file_is_one_line_and_can_be_set_aside(group_records, tmp_path):
    sp = Spool(tmp_path)
    path = sp.save("x", "", group_records)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SpoolError, match=r"cannot read saved results") as e:
        sp.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    aside = sp.set_aside(path)
    assert aside.exists() and sp.pending("x") == []


def test_spool_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("BPRESEARCH_SPOOL", raising=False)
    assert folder_for(f"sqlite:///{tmp_path}/s/mlflow.db") == tmp_path / "s" / ".bpresearch-spool"
    server = folder_for("http://127.0.0.1:5000")
    assert server.parent == Path.home() / ".cache" / "bpresearch" / "spool" and "/" not in server.name
    monkeypatch.setenv("BPRESEARCH_SPOOL", str(tmp_path / "elsewhere"))
    assert folder_for("http://x") == tmp_path / "elsewhere"


# ---------------------------------------------------------------- retries
class Clock:
    def __init__(self):
        self.t, self.sleeps = 0.0, []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def test_transient_errors_are_retried_with_backoff_within_the_budget():
    clock, calls = Clock(), []

    def flaky():
        calls.append(clock.t)
        if len(calls) < 4:
            raise ConnectionError("reset")
        return "ok"

    assert retry.call(flaky, "w", lambda e: True, budget=30, sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_transient_errors_give_up_after_the_budget():
    clock = Clock()

    def down():
        raise ConnectionError("refused")

    with pytest.raises(retry.StoreFailure, match=r"writing: still failing after \d+ attempts in 30 s"):
        retry.call(down, "writing", lambda e: True, budget=30, sleep=clock.sleep, clock=clock)
    assert sum(clock.sleeps) == pytest.approx(30) and max(clock.sleeps) == 5.0


def test_permanent_errors_fail_at_once():
    clock = Clock()
    with pytest.raises(retry.StoreFailure, match="disk full"):
        retry.call(lambda: (_ for _ in ()).throw(OSError("disk full")), "w", lambda e: False,
                   sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


def test_budget_from_environment(monkeypatch):
    monkeypatch.delenv("BPRESEARCH_STORE_RETRY_S", raising=False)
    assert retry.budget_s() == 30.0
    monkeypatch.setenv("BPRESEARCH_STORE_RETRY_S", "2.5")
    assert retry.budget_s() == 2.5


# ---------------------------------------------------------------- the lease
def test_file_lock_makes_a_second_holder_wait(tmp_path):
    path, events, out = tmp_path / "s" / ".lock", [], open(os.devnull, "w")
    got_first = threading.Event()

    def first():
        with lease.file_lock(path, "e", out):
            got_first.set()
            events.append("first in")
            time.sleep(0.5)
            events.append("first out")

    t = threading.Thread(target=first)
    t.start()
    got_first.wait(5)
    import io
    said = io.StringIO()
    with lease.file_lock(path, "e", said):  # separate open file: flock excludes it like another process
        events.append("second in")
    t.join()
    assert events == ["first in", "first out", "second in"]
    assert "is being swept by pid" in said.getvalue() and "waiting" in said.getvalue()


def test_file_lock_is_released_when_its_holder_is_killed(tmp_path):
    path = tmp_path / ".lock"
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    p.kill()
    p.wait()
    import io
    said = io.StringIO()
    with lease.file_lock(path, "e", said):
        pass
    assert said.getvalue() == ""  # no wait: the kernel released the dead holder's lock


class Tag:
    """An in-memory stand-in for the store's experiment tag, for the lease protocol's logic."""

    def __init__(self, value=""):
        self.value = value

    def get(self):
        return self.value

    def put(self, v):
        self.value = v


def test_store_lease_waits_for_a_live_holder_and_takes_an_expired_one(monkeypatch):
    monkeypatch.setattr(lease, "SETTLE_S", 0.0)
    now = time.time()
    import io
    said, slept = io.StringIO(), []
    tag = Tag(json.dumps({"owner": "x", "host": "elsewhere", "pid": 1, "since": now, "heartbeat": now}))

    def sleep(s):  # the live holder keeps beating for two polls, then stops (dies)
        slept.append(s)
        if len(slept) >= 3:
            tag.value = json.dumps({**json.loads(tag.value), "heartbeat": now - lease.TTL_S - 1})

    with lease.store_lease(tag.get, tag.put, "e", said, sleep=sleep):
        held = json.loads(tag.value)
        assert held["pid"] == os.getpid() and held["owner"] != "x"
    assert tag.value == "", "released on exit"
    assert "is being swept by pid 1 on elsewhere" in said.getvalue()
    assert slept.count(lease.POLL_S) >= 2


def test_store_lease_of_a_dead_pid_on_this_host_expires_at_once(monkeypatch):
    monkeypatch.setattr(lease, "SETTLE_S", 0.0)
    import io
    import socket
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    now = time.time()
    tag = Tag(json.dumps({"owner": "x", "host": socket.gethostname(), "pid": p.pid, "since": now,
                          "heartbeat": now}))
    said = io.StringIO()
    with lease.store_lease(tag.get, tag.put, "e", said, sleep=lambda s: s == lease.SETTLE_S or pytest.fail("waited")):
        assert json.loads(tag.value)["pid"] == os.getpid()
    assert said.getvalue() == ""


# ---------------------------------------------------------------- hostile names end to end
@pytest.mark.slow
def test_hostile_experiment_names_stay_inside_their_folders(tmp_path, monkeypatch):
    """Store, artifacts, spool and reports of experiments named like a path or an option."""
    from bpresearch.cli import main

    names = ["..", "-rf", "a/../../b"]
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    files = []
    for i, name in enumerate(names):
        files.append(work / f"e{i}.toml")
        files[-1].write_text(f'name = "{name}"\n[data]\nsource = "seed"\n[model]\nkind = "seed_graph"\n'
                             '[train]\nsteps = 5\n[sweep]\nlearning_rate = [0.01]\n')
    uri = f"sqlite:///{work}/store/mlflow.db"
    assert main(["sweep", *map(str, files), "--tracking-uri", uri]) == 0
    assert main(["report", "--tracking-uri", uri, "--out", str(work / "reports"), "--", *names]) == 0
    for name in names:
        safe = safe_name(name)
        assert (work / "store" / "mlartifacts" / safe).is_dir()
        assert (work / "store" / ".bpresearch-spool" / safe).is_dir()
        assert (work / "reports" / safe / "report.md").exists()
    outside = [p for p in tmp_path.rglob("*") if work not in p.parents and p != work]
    assert outside == [tmp_path / "a"], outside          # nothing written above the working folder
    assert sorted(p.name for p in work.iterdir()) == sorted([f.name for f in files] + ["reports", "store"])
    assert sorted(p.name for p in (work / "reports").iterdir()) == sorted(["index.html"] + list(map(safe_name, names)))
