"""Every name the store holds, in one leaf module (imports nothing from bpresearch).

The naming contract between the sweep, the store and analysis: tag names, metric names
(curves, diagnostics, summaries, ``steps_to_loss_<t>`` …), param names and how a config
value is written as a param, the swept-key mapping, and how an experiment name becomes a
file name. Analysis reads these names from here, never spells them itself.
"""

from __future__ import annotations

import hashlib
import json
import re

# ---------------------------------------------------------------- tags
KIND_TAG = "bpresearch.kind"          # "sweep" (parent) or "run" (child)
HASH_TAG = "bpresearch.config_hash"   # experiment.config_hash of a child run's resolved config
SWEEP, RUN = "sweep", "run"           # the values of KIND_TAG
ROUND_TAG = "bpresearch.round"        # refining sweeps: 0 for the initial grid, k for the k-th round
REFINE_ARTIFACT = "refine.json"       # refining sweeps: the parent's per-group record (rounds.RefineGroup)
AUTO_ARTIFACT = "auto.json"           # learning_rate = "auto": where the grid was placed (spec.auto.Placement)

# ---------------------------------------------------------------- metric names
TRAIN_LOSS = "train_loss"              # curves: the minibatch loss and gradient norm at logged steps,
GRAD_NORM = "grad_norm"
FULL_TRAIN_LOSS = "full_train_loss"    # the full training and test losses at evaluated steps
TEST_LOSS = "test_loss"
CURVE_KEYS = (TRAIN_LOSS, GRAD_NORM, FULL_TRAIN_LOSS, TEST_LOSS)
SHARPNESS = "sharpness"                # diagnostics at measured steps: λ_max of the Hessian,
STABILITY_LR = "stability_lr"          # the learning rate it makes unstable,
NOISE_SCALE = "gradient_noise_scale"   # B_simple = tr(Σ)/|G|²,
HESSIAN_NOISE_SCALE = "hessian_noise_scale"  # and B_noise = tr(HΣ)/(GᵀHG)
DIAGNOSTIC_KEYS = (SHARPNESS, STABILITY_LR, NOISE_SCALE, HESSIAN_NOISE_SCALE)
FINAL_LOSS = "final_full_train_loss"   # summaries: one value per run (step 0)
MIN_LOSS = "min_full_train_loss"
DIVERGED = "diverged"                  # 1.0 or 0.0
DIVERGED_STEP = "diverged_step"        # -1 when it did not diverge
STEPS_TO_GRAD_TOL = "steps_to_grad_tol"  # with train.grad_tol: first step with full-batch |∇L| < grad_tol
REACHED_GRAD_TOL = "reached_grad_tol"    # (absent when never: censored, like steps_to_target), 1.0/0.0
PARAM_PREFIX = "param/"                # param/<name>: one parameter's value after k updates (tiny models,
                                       # train.TRACK_PARAMS_MAX), a metric history the UI plots

# the parent of a refining sweep: rounds (the most any group took), learning rates and
# configurations added, refinement groups and how many of them resolved
REFINE_ROUNDS, REFINE_LRS_ADDED, REFINE_CONFIGS_ADDED = \
    "refine_rounds", "refine_learning_rates_added", "refine_configurations_added"
REFINE_GROUPS, REFINE_GROUPS_RESOLVED = "refine_groups", "refine_groups_resolved"


def param_metric(name: str) -> str:
    """The metric history of one scalar parameter: ``param/w``, ``param/w[1]``, ``param/x``."""
    return f"{PARAM_PREFIX}{name}"

# ---------------------------------------------------------------- names in the store
# The MLflow UI (3.17) lays a run's charts out in sections named by the prefix before "/":
# prefixed sections first, in alphabetical order, then the unprefixed "Model metrics". So
# the store holds the loss curves under "curves/", gradient norm and diagnostics under
# "diagnostics/" and a child run's one-value summaries under "summary/": the chart view
# leads with full_train_loss, test_loss and train_loss, and the summaries (which sorting
# and filtering need: metrics.`summary/diverged` = 1) follow; a sweep's own numbers
# (parent runs) stay unprefixed. The code uses the short names above: tracking writes
# ``stored_key``/``stored_summary`` and tracking_read gives back ``short_key``, so stores
# written before the prefixes read the same.
CURVES_PREFIX, DIAGNOSTICS_PREFIX, SUMMARY_PREFIX = "curves/", "diagnostics/", "summary/"
_PREFIXES = (CURVES_PREFIX, DIAGNOSTICS_PREFIX, SUMMARY_PREFIX)


def stored_key(key: str) -> str:
    """The MLflow name of a per-step metric: ``curves/full_train_loss``, ``diagnostics/grad_norm``."""
    if key in (FULL_TRAIN_LOSS, TRAIN_LOSS, TEST_LOSS):
        return CURVES_PREFIX + key
    if key in (GRAD_NORM, *DIAGNOSTIC_KEYS):
        return DIAGNOSTICS_PREFIX + key
    return key


def stored_summary(key: str) -> str:
    """The MLflow name of a child run's summary metric: ``summary/final_full_train_loss``."""
    return SUMMARY_PREFIX + key


def short_key(stored: str) -> str:
    """The name the code uses for a metric read from the store (either naming)."""
    for prefix in _PREFIXES:
        if stored.startswith(prefix):
            return stored[len(prefix):]
    return stored


def stored_names(key: str) -> tuple[str, ...]:
    """Every MLflow name a per-step metric ``key`` may have: prefixed now, bare in older stores."""
    return tuple(dict.fromkeys((stored_key(key), key)))


# ---------------------------------------------------------------- short params (the UI's columns)
LEARNING_RATE, BATCH_SIZE, SEED, STEPS = "learning_rate", "batch_size", "seed", "steps"
OPTIMIZER, MODEL, DATASET, LOSS = "optimizer", "model", "dataset", "loss"

# ---------------------------------------------------------------- swept keys
# A [sweep] section's short keys and the config entry each one sets.
SWEPT_INTO = {"learning_rate": "optimizer.learning_rate", "batch_size": "train.batch_size", "seeds": "train.seed"}


# ---------------------------------------------------------------- target metrics
def target_key(target: float) -> str:
    """How a loss target is written in metric names and text: ``0.06``, ``1e-06``."""
    return f"{target:g}"


def steps_key(target: float) -> str:
    """Steps to first reach full training loss < target (absent when not reached)."""
    return f"steps_to_loss_{target_key(target)}"


def examples_key(target: float) -> str:
    """Examples (steps × batch size) to the target (absent when not reached)."""
    return f"examples_to_loss_{target_key(target)}"


def above_key(target: float) -> str:
    """The last evaluated step whose full training loss was above the target, before the first below.

    Steps-to-target is the interval (above, steps]: every step at full batch, every
    ``eval_every`` steps otherwise. When not reached: the last evaluated step (censored there).
    """
    return f"steps_above_loss_{target_key(target)}"


def reached_key(target: float) -> str:
    """1.0 when the target was reached, else 0.0."""
    return f"reached_loss_{target_key(target)}"


# The first target is also logged under these names, so the UI has one column to sort by.
FIRST_TARGET_KEYS = {"steps": "steps_to_target", "examples": "examples_to_target", "reached": "reached_target",
                     "above": "steps_above_target"}


def param_text(value) -> str:
    """A config value as a param: lists and dicts as JSON, anything else as ``str``."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def param_key(section: str, key: str) -> str:
    """The param of one config entry: ``section.key``."""
    return f"{section}.{key}"


def swept_params(sweep: dict) -> set[str]:
    """The ``section.key`` params that a ``[sweep]`` section varies from run to run.

    Args:
        sweep: the ``sweep`` table of a resolved config (``learning_rate``, ``batch_size``,
            ``seeds`` or ``section.key`` entries).
    """
    out = {SWEPT_INTO.get(k, k) for k in sweep}
    if SWEPT_INTO["batch_size"] in out:  # "full" among the batch sizes sets train.full_batch too
        out.add("train.full_batch")
    return out


# ---------------------------------------------------------------- the [sweep] refine table
# A sweep's resolved.toml keeps the table as written; the sweep (spec.refine) and the report
# (analysis.refinement) both read it through ``refine_table``, so they see the same targets
# and the same defaults.
REFINE_KEYS = ("target", "resolution", "max_rounds", "per_round")
REFINE_DEFAULTS = {"resolution": 2 ** 0.25, "max_rounds": 6, "per_round": None}


def refine_table(raw: dict, train_targets) -> dict:
    """``[sweep] refine`` with its defaults: ``{targets: [..], resolution, max_rounds, per_round}``.

    Args:
        raw: the table as written (``target`` a loss or a list of losses; absent: the first
            of ``train_targets``); values are not checked here (``spec.refine`` does).
        train_targets: ``[train] targets``.
    """
    target = raw.get("target", list(train_targets[:1]))
    out = {k: raw.get(k, v) for k, v in REFINE_DEFAULTS.items()}
    return {"targets": list(target) if isinstance(target, list) else [target], **out}


# ---------------------------------------------------------------- file names
# An experiment name is free text (``name = "..."``); a path built from it must stay inside
# its folder and must not be read as an option. ``safe_name`` keeps letters, digits, ``_``,
# ``.`` and ``-``, replaces everything else with ``_``, never starts with ``.`` or ``-``
# (so ``..``, ``.hidden`` and ``-rf`` become ordinary names) and stays under 100 bytes.
# A name that had to change gets 8 hex digits of its SHA-256, so that two names never
# share a folder (``a/b`` and ``a_b``); a name that is already safe is kept as it is.
MAX_BYTES = 100  # well under the 255 bytes most file systems allow in one name


def safe_name(name: str) -> str:
    """A single path component for ``name``: no separators, no leading ``.``/``-``, ≤ 100 bytes."""
    safe = re.sub(r"[^\w.-]", "_", name)
    if safe[:1] in (".", "-", ""):
        safe = "_" + safe
    if safe == name and len(safe.encode()) <= MAX_BYTES:
        return safe
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_cut(safe, MAX_BYTES - 9)}-{digest}"


def _cut(text: str, n: int) -> str:
    """At most ``n`` bytes of ``text`` in UTF-8, never half a character."""
    return text.encode()[:n].decode(errors="ignore")
