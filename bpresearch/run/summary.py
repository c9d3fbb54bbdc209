"""What a sweep reports: its counts and times, the parent run's metrics, the console table."""

from __future__ import annotations

from dataclasses import dataclass

from bpresearch import keys


@dataclass
class SweepSummary:
    name: str
    grid: int
    skipped: int
    logged: int
    groups: int
    wall_s: float = 0.0
    compile_s: float = 0.0
    train_s: float = 0.0
    tracking_s: float = 0.0
    tracking_wait_s: float = 0.0
    points: int = 0
    diverged: int = 0           # diverged runs of this sweep
    diverged_before: int = 0    # diverged runs of the grid already in the store (skipped now)
    trained: int = 0
    parent_id: str | None = None
    experiment_id: str | None = None   # the experiment in the store (the UI link printed at the end)
    refined: list[dict] | None = None   # per refinement group (``RefineGroup.as_dict``), if refining

    @property
    def diverged_in_store(self) -> int:
        """Diverged runs of the whole grid in the store after this sweep."""
        return self.diverged_before + self.diverged

    def metrics(self) -> dict[str, float]:
        """The parent run's metrics: counts, times, and the refinement's summary if refining."""
        return {
            "grid_size": self.grid, "runs_logged": self.logged, "runs_skipped": self.skipped,
            "runs_diverged": self.diverged, "wall_time_s": self.wall_s, "compile_time_s": self.compile_s,
            "train_time_s": self.train_s, "tracking_time_s": self.tracking_s,
            "tracking_wait_s": self.tracking_wait_s,
            "tracking_share": self.tracking_s / self.wall_s if self.wall_s else 0.0,
            "metric_points": self.points, **refine_metrics(self.refined)}


def refine_metrics(groups: list[dict] | None) -> dict[str, float]:
    """The parent's refinement summary: rounds (the most any group took), learning rates and
    configurations added, groups resolved out of all (the detail is the artifact refine.json)."""
    if not groups:
        return {}
    return {keys.REFINE_ROUNDS: max(g["rounds"] for g in groups),
            keys.REFINE_LRS_ADDED: sum(g["added"] for g in groups),
            keys.REFINE_CONFIGS_ADDED: sum(g["added"] * g["seeds"] for g in groups),
            keys.REFINE_GROUPS: len(groups),
            keys.REFINE_GROUPS_RESOLVED: sum(g["resolved"] for g in groups)}


def table(summaries: list[SweepSummary]) -> list[str]:
    """The console summary after a sweep: one row per experiment, a legend, and what tracking cost."""
    lines = [f"{'experiment':<24} {'runs':>6} {'new':>5} {'diverged':>8} {'compile':>8} {'train':>8} "
             f"{'tracking':>9} {'wall':>7}"]
    for s in summaries:
        lines.append(f"{s.name:<24} {s.grid:>6} {s.logged:>5} {s.diverged_in_store:>8} {s.compile_s:>7.1f}s "
                     f"{s.train_s:>7.1f}s {s.tracking_s:>8.1f}s {s.wall_s:>6.1f}s")
    lines.append("(runs: the grid; new: logged now; diverged: runs of the grid in the store that diverged, "
                 "earlier ones included)")
    wall = sum(s.wall_s for s in summaries)
    tracked = sum(s.tracking_s for s in summaries)
    points = sum(s.points for s in summaries)
    if wall > 0 and any(s.logged for s in summaries):
        waited = sum(s.tracking_wait_s for s in summaries)
        lines.append(f"{sum(s.logged for s in summaries)} runs and {points:,} metric points logged in {wall:.1f}s; "
                     f"tracking took {tracked:.1f}s ({100 * tracked / wall:.0f}% of the time, overlapped with "
                     f"training; {waited:.1f}s spent waiting for it at the end).")
    return lines
