"""One experiment's results as pandas frames, for a notebook: ``from bpresearch import Study``.

``Study("digits-mlp")`` reads the store a report reads (``tracking_uri``, else
``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; a server URI works too) through
``load`` and ``bpresearch.store.reads``: curves of a sqlite store come straight from its
``metrics`` table, read only. It never trains, never imports JAX, and writes nothing
except what ``report`` writes.

- ``runs()``: one row per child run: run id, status, variant, swept settings (learning rate,
  batch size, seed …), facets, summaries.
- ``curves(metric)``: one row per logged point of one metric, with each run's settings.
- ``summary(target)``: the report's cells (best learning rate, steps to the target, their
  intervals …), one row per variant × cell × target: the numbers of ``summary.json``.
- ``report(out)``: the HTML report and ``summary.json``, as ``bpresearch report`` writes them.

What is read is kept: a second call costs nothing. ``Study(...).reload()`` reads again.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from bpresearch import keys as R
from bpresearch.store import reads

from . import load
from .groups import split_groups
from .summary import experiment_summary, frame_of, variant_summary
from .trajectories import param_keys

SETTINGS = ["learning_rate", "batch_size", "full_batch", "seed", "optimizer", "steps"]
INFO = ["run_id", "run_name", "status", "variant", "config_hash"]


class Study:
    """The runs of one experiment in a store, as frames.

    Args:
        experiment: the experiment's name (its file's ``name``).
        tracking_uri: the store (None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``).

    Raises:
        StoreError: no store at ``tracking_uri``, or no such experiment in it (the message
            lists the known ones and suggests the likely one).
    """

    def __init__(self, experiment: str, tracking_uri: str | None = None):
        self.name = experiment
        self.uri = reads.resolve_uri(tracking_uri)
        try:
            reads.experiment(self.uri, experiment)
        except reads.StoreError:
            known = load.experiment_names(self.uri, finished_only=False)
            raise reads.StoreError(f"no experiment {experiment!r} in {self.uri}"
                                   f"{load.did_you_mean([experiment], known)}; known: "
                                   f"{', '.join(known) or 'none'}") from None

    def __repr__(self) -> str:
        return f"Study({self.name!r}, tracking_uri={self.uri!r})"

    def reload(self) -> Study:
        """Forget what was read: the next call reads the store again."""
        for attr in ("data", "_curves"):
            self.__dict__.pop(attr, None)
        return self

    @cached_property
    def data(self) -> load.ExperimentData:
        """The experiment as a report reads it (``load.load_experiment``): finished runs, sweeps, variants."""
        return load.load_experiment(self.uri, self.name)

    @property
    def facets(self) -> list[str]:
        """The swept keys other than learning rate, batch size and seed, over every variant."""
        return sorted({f for v in self.data.variants for f in v.facets})

    @cached_property
    def _curves(self) -> pd.DataFrame:
        """Every curve a report reads (loss curves, diagnostics, parameter trajectories)."""
        runs = self.data.runs
        keys = R.CURVE_KEYS + R.DIAGNOSTIC_KEYS + param_keys(runs)
        return load.load_curves(self.uri, runs["run_id"] if not runs.empty else [], keys)

    # ------------------------------------------------------------------ frames
    def runs(self, finished: bool = False) -> pd.DataFrame:
        """One row per child run: ``run_id, run_name, status, variant, config_hash``, the swept
        settings (``learning_rate, batch_size, full_batch, seed, optimizer, steps``), one column
        per facet, then the summaries (``final_full_train_loss``, ``steps_to_0.06`` …, ``diverged``).

        Args:
            finished: only FINISHED runs (the ones a report analyses); by default every child
                run, RUNNING, FAILED and KILLED included (their ``variant`` is empty).
        """
        parts = [v.runs.assign(variant=v.slug) for v in self.data.variants if not v.runs.empty]
        if not finished and self.data.unfinished:
            every = load.runs_frame(reads.runs(self.uri, self.data.experiment_id))
            parts.append(every[(every["kind"] == R.RUN) & (every["status"] != "FINISHED")].assign(variant=""))
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=INFO)
        curves = set(R.CURVE_KEYS) | set(R.DIAGNOSTIC_KEYS)
        summaries = [c for c in df.columns if c.startswith("metrics.") and c[len("metrics."):] not in curves
                     and not c.startswith(f"metrics.{R.PARAM_PREFIX}") and df[c].notna().any()]
        cols = [c for c in INFO + SETTINGS + self.facets if c in df] + summaries
        out = df[cols].rename(columns={c: c[len("metrics."):] for c in summaries})
        if "diverged" in df:
            out["diverged"] = df["diverged"].fillna(False).astype(bool)
        return out.reset_index(drop=True)

    def curves(self, metric: str = R.FULL_TRAIN_LOSS) -> pd.DataFrame:
        """One row per logged point of ``metric`` of every finished run: ``run_id, step, value``,
        then ``variant, learning_rate, batch_size, seed`` and the facets (long form, for seaborn).

        Args:
            metric: a curve (``full_train_loss``, ``train_loss``, ``grad_norm``, ``test_loss``),
                a diagnostic (``sharpness`` …) or a parameter trajectory (``param/w``).
        """
        c = self._curves
        if metric not in set(c["key"]):
            c = load.load_curves(self.uri, self.data.runs["run_id"] if not self.data.runs.empty else [], [metric])
        c = c[c["key"] == metric].drop(columns="key")
        settings = self.runs(finished=True)
        keep = [k for k in ["run_id", "variant", "learning_rate", "batch_size", "full_batch", "seed", *self.facets]
                if k in settings]
        return c.merge(settings[keep], on="run_id", how="left").reset_index(drop=True)

    def summary(self, target: float | str | None = None) -> pd.DataFrame:
        """The report's cells, one row per variant × cell (facet values × batch size) × target:
        ``variant, batch_size`` and the facets, ``runs, seeds, learning_rates_tried``, ``target``,
        ``best_learning_rate, steps_median, steps_min, steps_max, examples_median, seeds_reached``,
        ``steps_interval``, ``interval`` and ``scaling`` (dicts) …: ``summary.json``'s numbers
        (docs/reports.md), computed as the report computes them.

        ``steps_from`` says where the steps come from: "sweep" (counted in the compiled program)
        or "curve" (a target the sweep was not given, read from the logged curve between two
        evaluations).

        Args:
            target: only this loss target (``0.06`` or ``"0.06"``); None: every target the runs
                were swept with. Any other target is answered from the logged curves.
        """
        df = frame_of(self.summary_json(None if target is None else [float(target)]))
        if target is not None and not df.empty:
            df = df[df["target"] == R.target_key(float(target))]
        return df.reset_index(drop=True)

    def summary_json(self, targets: list[float] | None = None) -> dict:
        """``summary.json``'s variants and their cells, fits and predictions (without the headlines
        and recommendations, which the report's sections write); ``targets`` as in ``report``."""
        out = []
        for v in self.data.variants:
            groups = split_groups(v.runs, self._curves, v.facets, targets) if not v.runs.empty else []
            out.append(variant_summary(v, groups))
        return experiment_summary(self.name, out)

    def report(self, out: str | Path | None = None, targets: list[float] | None = None) -> Path:
        """Write this experiment's report as ``bpresearch report`` does (to ``out``, default
        ``reports``) and return its ``index.html``. Without the run side (it would load JAX) the
        seed's worked-example pictures say that they are not shown; ``bpresearch report`` draws them.
        ``targets``: as ``bpresearch report --targets`` (default: those the runs were swept with).
        """
        from . import report as reportmod
        from .render import slug

        out = Path(out) if out is not None else Path("reports")
        args = SimpleNamespace(experiments=[self.name], tracking_uri=self.uri, out=str(out), variant=None,
                               targets=",".join(map(repr, targets)) if targets else None)
        if reportmod.main(args) != 0:
            raise reads.StoreError(f"the report of {self.name!r} could not be written (see the message above)")
        return out / slug(self.name) / "index.html"
