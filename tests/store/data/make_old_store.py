"""Writes the store that ``test_old_store.py`` resumes: every shipped experiment's runs, params and
tags only (no curves), as the release at commit 4a2693c logs them.

It must run against THAT release's code, not this one's, or the store would prove nothing:

    git worktree add OLD 4a2693c     # OLD: any folder outside this checkout
    PYTHONPATH=OLD python tests/store/data/make_old_store.py OLD/experiments OUT.db
    sqlite3 OUT.db VACUUM && xz -9e -c OUT.db > tests/store/data/store-4a2693c.db.xz

Nothing trains: each run is logged FINISHED with the params and hash tag that release gives its
config, and the summaries a run that reached nothing would have.
"""

import sys
from pathlib import Path

from bpresearch.run.records import flat_params
from bpresearch.spec import experiment
from bpresearch.spec.experiment import group_key
from bpresearch.store.record import RunRecord
from bpresearch.store.tracking import open_store


def main(folder: str, db: str):
    store = open_store(f"sqlite:///{Path(db).resolve()}")
    for path in sorted(Path(folder).glob("*.toml")):
        exp = experiment.load(path)
        exp_id = store.experiment(exp.name, exp.description)
        parent = store.start_sweep(exp_id, "sweep 4a2693c", {"file": path.name, "grid_size": str(len(exp.runs))},
                                   {}, {})
        recs = [RunRecord(r, flat_params(r.config), {}, {"diverged": 0.0, "diverged_step": -1.0}, group=group_key(r.config))
                for r in exp.runs]
        store.log_runs(exp_id, parent, recs, {})
        store.end_sweep(parent, {"runs_logged": len(recs)})
        print(f"{exp.name}: {len(recs)} runs")


if __name__ == "__main__":
    main(*sys.argv[1:])
