"""The executor options of ``bpresearch sweep``: bad combinations and a missing Ray are one line, exit 2."""

import subprocess
import sys
from pathlib import Path

from bpresearch.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXP = str(ROOT / "experiments" / "seed-graph.toml")


def test_executor_options_need_the_ray_executor(capsys, tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(["sweep", EXP, "--tracking-uri", uri, "--address", "auto"]) == 2
    assert main(["sweep", EXP, "--tracking-uri", uri, "--executor", "ray", "--actors", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bpresearch: error: --address and --actors go with --executor ray",
                   "bpresearch: error: --actors: must be ≥ 1, not 0"]
    assert not (tmp_path / "m.db").exists()


def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path):
    # A Python where `import ray` fails, as it does where the extra is not installed.
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    proc = subprocess.run([sys.executable, "-m", "bpresearch.cli", "sweep", EXP, "--executor", "ray",
                           "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--set", "train.steps=3"],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "bpresearch: error: --executor ray needs Ray, an optional extra: pip install -e '.[ray]'"]
    assert not (tmp_path / "m.db").exists()
