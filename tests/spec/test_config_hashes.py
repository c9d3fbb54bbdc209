"""Pins what the five shipped experiments resolve to, so a refactor cannot change it silently.

A run's config hash is how a sweep resumes and how the store names a run; the group key
is logged as ``bpresearch.group``; the resolved TOML is logged with every sweep. A change
to a digest below means that stores swept before it no longer resume or compare: it must
be on purpose, and docs/guarantees.md must say so.

Since the loss targets left the hash (``experiment.config_hash``), the digests in ``PINNED``
are of ``experiment.legacy_hash``, the form that stores swept up to 4a2693c carry and that
``run.resume`` still recognises; ``CURRENT`` pins the hashes new runs get.

Resolved TOML shows only the settings that apply to the run's data source, model and
optimizer (``config.applicable``); run hashes and group keys do not depend on that.
"""

import hashlib
from pathlib import Path

import pytest

from bpresearch.spec import config, experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

# file -> (runs, sha256 of the sorted run hashes, sha256 of the sorted group keys,
#          sha256 of the resolved TOML without its "# resolved from <path>" line)
PINNED = {
    "seed-graph.toml": (13, "5b9f320afe324d579e513aad0ebdb4870fa62641e671f853a7faa7c505da5930",
        "4961e964d24adcf70ecb7b85e1e431fe9ea01f34dc5f68d3dbb470ffaa2c3d57",
        "1693aeb232e3e6ecb6171ebf41f33d5bbd9c213e55ce2f416adc4260bbdc14f8"),
    "neuron-random-vs-gd.toml": (32, "d45f249d2f6b60a5223ac9fa6ec99c9458aec095e1381db43724f7fc61915d39",
        "ade8adb88b2878de3bb309216da6a5cd17272c2222021b64497ca217c84a879d",
        "6a712c574bb1372297eea32bc23013430116092e388d7f5e0a07e3926bd628b0"),
    "batch-vs-stochastic.toml": (30, "72df7938b3e20e217ac9a73335581e6f5976c50d2617fc01122d301efe792c9d",
        "82c07f8757d2d0f3063701399218bbb87406aea4bdc6f020c90ceeab01c00cea",
        "dabd51b1544bb58156e63fad23a6e211c8ae182c093495f041dd7efee36ef4b6"),
    "linear-regression.toml": (132, "499219d35ac4e650c19113b359a5f200c37fec6b7ac7eb13420cae122baa5e6d",
        "2e3544741e2c057499a02dd08eecfabe80f71fc1a19d9c5d30d2ab0a105f4df3",
        "8c79d6ada7f2d989a2aa4d18843ba5770699f362318a4e3383bcb1992e030ba3"),
    # refining: 9 of the 12 learning rates, then refined ([sweep] refine); same group keys
    "digits-mlp.toml": (135, "a43a4148c32308278524fa2ddda4787a4d7f041f0a56806fbb86004873d0a1b5",
        "9f200869077780312c2dd2e44139a5b2d23dc03507da38327a253a1d98311a62",
        "149aa00620a8a7766484de5a86838310eba9c6dbaa96a3721c7c96497dbc043b"),
}
# file -> sha256 of the sorted run hashes in the current form (no targets: ``config_hash``)
CURRENT = {
    "seed-graph.toml": "c650ea737d5df418645e6dbd64c673e6d76ac717d00ecc8158887535c1d68fac",
    "neuron-random-vs-gd.toml": "5c44a122ede75b10b7f46e986e31d142cb166432350c78d0052357124504bb66",
    "batch-vs-stochastic.toml": "731b2273bc1c83c10913353cadedae6c677fe476afab8265e4a5a3defab89bc6",
    "linear-regression.toml": "ac2e13a7f0383630f5758a9b9b598fe96fb1ebe549e8ebaaa69971965b2c81ad",
    "digits-mlp.toml": "96d04bc4a08b85fa8e067af55a5d486156dc5d24c1d61cbc4b52863289839c00",
}
# digits-mlp before refinement existed (12 learning rates 0.004 … 8, no refinement): its runs keep
# these hashes, so a store made before it resumes, and ``refine`` changes no hash.
DIGITS_BEFORE_REFINE = (180, "ce6c22f17aecf8b04d9d7f38585d23154e65e1a214595300f7d9f75eb289fd65")


def _digest(items) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def legacy(run) -> str:
    """The hash a release up to 4a2693c gave ``run`` (swept with its own targets)."""
    return experiment.legacy_hash(run.config, run.config["train"]["targets"])


def fingerprint(path: Path):
    exp = experiment.load(path)
    groups = {experiment.group_key(r.config) for r in exp.runs}
    toml = config.to_toml(exp).split("\n", 1)[1]
    return (len(exp.runs), _digest(sorted(legacy(r) for r in exp.runs)), _digest(sorted(groups)),
            hashlib.sha256(toml.encode()).hexdigest())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_experiments_resolve_to_pinned_hashes(name):
    assert fingerprint(EXPERIMENTS / name) == PINNED[name]
    exp = experiment.load(EXPERIMENTS / name)
    assert _digest(sorted(r.hash for r in exp.runs)) == CURRENT[name]


def test_targets_change_no_hash():
    path = EXPERIMENTS / "linear-regression.toml"
    base = {r.name: r.hash for r in experiment.load(path).runs}
    for targets in ("[0.06, 0.03]", "[0.5]", "[]"):
        assert {r.name: r.hash for r in experiment.load(path, [f"train.targets={targets}"]).runs} == base


def test_refining_digits_keeps_the_old_grid_hashes():
    grid = 'sweep.learning_rate={ min = 0.004, max = 8.0, num = 12, scale = "log" }'
    old = experiment.load(EXPERIMENTS / "digits-mlp.toml", [grid])
    assert old.refine is not None
    assert (len(old.runs), _digest(sorted(legacy(r) for r in old.runs))) == DIGITS_BEFORE_REFINE
    new = experiment.load(EXPERIMENTS / "digits-mlp.toml")
    assert {r.hash for r in new.runs} < {r.hash for r in old.runs}
