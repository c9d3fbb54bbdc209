"""What makes a run reproducible: git commit and dirty flag, package versions, backend."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "optax", "mlflow", "numpy", "pandas", "seaborn", "scikit-learn")


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def provenance(where: str = ".") -> dict[str, str]:
    """Tags describing code and machine: ``git.commit``, ``git.dirty``, versions, backend."""
    import jax  # local: keep start-up of commands that never train light

    cwd = Path(where).resolve()
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    tags = {
        "git.commit": commit or "unknown",
        "git.dirty": "unknown" if dirty is None else str(bool(dirty)).lower(),
        "version.python": platform.python_version(),
        "jax.backend": jax.default_backend(),
        "jax.device": str(jax.devices()[0].device_kind),
        "host.machine": platform.machine(),
    }
    for pkg in PACKAGES:
        try:
            tags[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        tags["version.bpresearch"] = metadata.version("bpresearch")
    except metadata.PackageNotFoundError:
        pass
    return tags
