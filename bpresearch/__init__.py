"""bpresearch: sweeps of learning rate × batch size, tracked in MLflow, and their reports.

``from bpresearch import Study`` gives an experiment's results as frames for a notebook
(``analysis.study``; docs/notebooks.md). It is imported on first use, so ``import
bpresearch`` stays cheap and loads neither pandas nor JAX.
"""

__all__ = ["Study"]


def __getattr__(name: str):
    if name == "Study":
        from analysis.study import Study

        return Study
    raise AttributeError(f"module 'bpresearch' has no attribute {name!r}")
