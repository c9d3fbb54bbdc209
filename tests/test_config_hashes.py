"""Pins what the five shipped experiments resolve to, so a refactor cannot change it silently.

A run's config hash is how a sweep resumes and how the store names a run; the group key
is logged as ``bpresearch.group``; the resolved TOML is logged with every sweep. The
digests below were computed before issue 9's refactor (commit 10067b5); a change here
means old stores would no longer resume or compare, and needs a README note.
"""

import hashlib
from pathlib import Path

import pytest

from bpresearch import config, experiment

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

# file -> (runs, sha256 of the sorted run hashes, sha256 of the sorted group keys,
#          sha256 of the resolved TOML without its "# resolved from <path>" line)
PINNED = {
    "seed-graph.toml": (13, "4490e4ba355a73752725e6249201f844859b6483172e2dcff1b002a6f667d848",
        "36636643b9b387f5ae64346d60a77a85c417c95d881d9da10ec7252f727c67e1",
        "dcfb54b983b5633c1cb075a3e6b312f698c5c2c8f66f965be44dc10adc7352c1"),
    "neuron-random-vs-gd.toml": (32, "2437ed237c2e3eacdd97f767b48ec5fb5db11863637e755db68304f8bb54cec8",
        "c1ad1f1b30dd57c4ae6760af1afaf791b0d70d3a2f79c2a78031f4e3746e2d42",
        "81e2bf373bf7a70d1d9681d9cad1f1c7386a9d86bb5d4d29da2bbf918c9576bc"),
    "batch-vs-stochastic.toml": (30, "da6c48138168e4188eb97981520b2cae446eed8f9e23ade54015593fac0fad79",
        "9700e589c3c387e0cd41cf91a801882345add6b417c0da41b4b5cd2336ed6df7",
        "a6e9d14dab551a55b33ca2ed84a6a69dea358478e743ca7ef959c35dd79e6639"),
    "linear-regression.toml": (132, "193ada13370d287212f8442d080c5cb23a0a503db27b9274508f87aced32b6e5",
        "f9adfed4fbc30e18da3d3f88d47966c587ffa44fb7fed95e417fc720ab7a29cb",
        "b1b6f2b0e254f18701b64cbe6a29a871e3d3e82b2b3ccde9508d0c8cbad24698"),
    "digits-mlp.toml": (180, "b46e1460b92b76b1a1cbc94ffd8ba876391d472cc34718efeefee34837a13b40",
        "6f52a444f004049df4cccc6a3551ca71b821d21b3742a7cf4d6348861b067f1f",
        "0618378b0cbf4557ef042dcdd211ad51a983a626321e53cbf1588c6efff9f9bb"),
}


def _digest(items) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def fingerprint(path: Path):
    exp = experiment.load(path)
    groups = {experiment.group_key(r.config) for r in exp.runs}
    toml = config.to_toml(exp).split("\n", 1)[1]
    return (len(exp.runs), _digest(sorted(r.hash for r in exp.runs)), _digest(sorted(groups)),
            hashlib.sha256(toml.encode()).hexdigest())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_experiments_resolve_to_pinned_hashes(name):
    assert fingerprint(EXPERIMENTS / name) == PINNED[name]
