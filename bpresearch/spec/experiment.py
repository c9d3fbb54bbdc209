"""An experiment: its grid of runs, each run's config hash, and the compiled groups.

``load`` reads a file through ``config.read`` (schema, checks, overrides), expands the
sweep into one fully resolved config per run, loads each distinct data set once and
hashes every config. The hash names a run in the store, so a sweep resumes where it
stopped; it covers what training computes, not the questions asked of the result: the loss
targets are left out (``config_hash``), so a new target never retrains. Stores swept before
that carry ``legacy_hash`` (docs/guarantees.md, "Hashes are a contract"); the group key names what one compiled program can train (``VMAPPED`` values
are data inside it, everything else splits groups). A run's config is the dict that is
hashed; ``Run.spec`` is its typed form.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from bpresearch.core import data as datamod
from bpresearch.keys import SWEPT_INTO
from bpresearch.spec import auto, config, usercode, workload
from bpresearch.spec import refine as refinemod
from bpresearch.spec.config import ExperimentError
from bpresearch.spec.resolve import normalize, resolve_defaults
from bpresearch.spec.schema import Data, Loss, Model, Spec, section_of, spec_of

# Values vmapped inside one compiled program; everything else splits groups.
VMAPPED = ("optimizer.learning_rate", "optimizer.momentum", "train.seed")


def _short(dotted: str) -> str:
    """``optimizer.kind`` -> ``optimizer``, ``model.activation`` -> ``activation``."""
    section, key = dotted.split(".")
    return section if key == "kind" else key


@dataclass(frozen=True)
class Run:
    """One configuration of the grid: the fully resolved config and its hash."""
    config: dict
    hash: str
    digits: int = 3   # significant digits of the learning rate in ``name``

    @cached_property
    def spec(self) -> Spec:
        """The config, typed and read-only: ``run.spec.optimizer.learning_rate``."""
        return spec_of(self.config)

    @property
    def name(self) -> str:
        """Run name for the UI, short enough for its run table: ``lr=0.3 bs=32 s1``.

        Only what the grid varies, so it is unique within the grid: swept choices by value
        (``adam``), the learning rate (3 significant digits, more where two would read
        the same: ``digits``), ``bs=`` and the seed ``s…`` when swept, then any other swept
        ``key=value``. A grid that varies nothing still names its learning rate.
        """
        s = self.spec
        swept = s.swept
        parts = [str(v) for k, v in swept.items() if k.endswith(".kind")]
        has_lr = s.optimizer.kind != "random_search"   # random search has no learning rate
        if has_lr and ("optimizer.learning_rate" in swept or not swept):
            parts.append(f"lr={s.optimizer.learning_rate:.{self.digits}g}")
        if "train.batch_size" in swept:
            parts.append(f"bs={'full' if s.train.full_batch else s.train.batch_size}")
        if "train.seed" in swept:
            parts.append(f"s{s.train.seed}")
        parts += [f"{_short(k)}={v}" for k, v in swept.items()
                  if k not in SWEPT_INTO.values() and not k.endswith(".kind")]
        return " ".join(parts) or "run"


@dataclass
class Experiment:
    """An experiment file expanded: its grid of runs and the data they train on."""
    path: Path
    name: str
    description: str
    base: dict                        # resolved config without the swept values
    axes: dict[str, list]             # dotted key -> values
    runs: list[Run]
    datasets: dict[str, datamod.Dataset] = field(repr=False)  # data-config hash -> data
    refine: refinemod.Settings | None = None  # [sweep] refine: learning rates added per group
    sources: dict[str, str] = field(default_factory=dict)  # user code: its file (relative) -> its text
    placement: auto.Placement | None = None  # where learning_rate = "auto" placed the grid

    def groups(self) -> dict[str, list[Run]]:
        """Runs grouped by what their compiled program depends on (shapes and statics)."""
        out: dict[str, list[Run]] = {}
        for run in self.runs:
            out.setdefault(group_key(run.config), []).append(run)
        return out

    def dataset(self, config: dict) -> datamod.Dataset:
        """The loaded data of a run's config."""
        return self.datasets[_data_key(config["data"])]


def _hash(obj) -> str:
    """The first 16 hex digits of the SHA-256 of ``obj`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Config entries a run's hash leaves out: questions asked of its logged curve, not settings of
# training (the compiled program still counts each target's crossing, at full resolution).
QUESTIONS = (("train", "targets"),)


def config_hash(config: dict) -> str:
    """A run's hash: its resolved config without the swept record and without ``QUESTIONS``."""
    c = {k: v for k, v in config.items() if k != "swept"}
    for section, key in QUESTIONS:
        c[section] = {k: v for k, v in c[section].items() if k != key}
    return _hash(c)


def legacy_hash(config: dict, targets) -> str:
    """The hash releases up to 4a2693c gave this config swept with loss ``targets``: the
    targets were part of it. ``run.resume`` finds runs of such stores by it."""
    c = {k: v for k, v in config.items() if k != "swept"}
    c["train"] = {**c["train"], "targets": list(targets)}
    return _hash(c)


def _data_key(data: dict) -> str:
    """What identifies a data set: its ``[data]`` section, without the file digest set on loading."""
    return _hash({k: v for k, v in data.items() if k != "sha256"})


def group_key(config: dict) -> str:
    """What one compiled program shares: everything but the ``VMAPPED`` values and the swept record."""
    c = copy.deepcopy(config)
    for dotted in VMAPPED:
        s, k = dotted.split(".")
        c[s].pop(k, None)
    c.pop("swept", None)
    return _hash(c)


def refine_key(config: dict) -> str:
    """What a refinement group shares: everything but the learning rate and the seed."""
    c = copy.deepcopy(config)
    c["optimizer"].pop("learning_rate", None)
    c["train"].pop("seed", None)
    c.pop("swept", None)
    return _hash(c)


def with_learning_rate(run: Run, learning_rate: float) -> Run:
    """The same configuration at another learning rate, hashed as if that rate had been in the grid."""
    c = copy.deepcopy(run.config)
    c["optimizer"]["learning_rate"] = learning_rate
    c["swept"] = {**c["swept"], SWEPT_INTO["learning_rate"]: learning_rate}
    return Run(c, config_hash(c))


MAX_CLASSES = 100_000   # cross_entropy: one output per class
TEACHER_MAX = 10**8     # teacher data: (n_train + n_test) × n_features values at most (≈ 400 MB)


def _check_size(data: Data, err):
    """Teacher data small enough to generate: a typo of n_train must not fill the memory."""
    if data.source == "teacher" and (data.n_train + data.n_test) * data.n_features > TEACHER_MAX:
        err("data", "n_train", f"teacher data of ({data.n_train} + {data.n_test}) × {data.n_features} "
            f"values is too large (at most {TEACHER_MAX:.0e})")


def _check_compatible(loss: Loss, model: Model, ds: datamod.Dataset, err):
    """Cross-entropy (or a loss of one's own on classes) needs a model with class logits and integer
    labels ≥ 0, not too many classes."""
    if loss.kind != "cross_entropy" and not (usercode.is_file(loss.kind) and loss.classes):
        return
    if model.kind == "seed_graph":
        err("loss", "kind", "cross_entropy needs class logits; seed_graph outputs one number")
    for key, y in (("y", ds.y_train), ("y_test", ds.y_test)):
        if y is None or not len(y):
            continue
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            err("loss", "kind", f"{loss.kind} needs integer class labels ≥ 0 in {key}")
        if y.max() >= MAX_CLASSES:  # one output per class: a label of 10⁹ would ask for 10⁹ outputs
            err("loss", "kind", f"cross_entropy: {key} has label {int(y.max())}, so {int(y.max()) + 1} "
                f"classes (at most {MAX_CLASSES})")


def _combos(axes: dict[str, list]) -> Iterator[dict]:
    """Every point of the grid: dotted key -> value, for every axis."""
    for combo in itertools.product(*axes.values()):
        yield dict(zip(axes, combo))


def _with_values(cfg: dict, point: dict) -> dict:
    """A copy of ``cfg`` with the grid point's values set and the defaults that follow them resolved."""
    c = copy.deepcopy(cfg)
    for dotted, v in point.items():
        s, k = dotted.split(".")
        c[s][k] = v
    return resolve_defaults(c)


def _dataset(c: dict, path: Path, datasets: dict, err) -> datamod.Dataset:
    """The data of config ``c``, loaded and checked once per distinct ``[data]`` (cached in ``datasets``)."""
    dkey = _data_key(c["data"])
    if dkey not in datasets:
        data = section_of("data", c["data"])
        _check_size(data, err)
        try:
            ds = datamod.load(path.parent, **c["data"])
        except datamod.DataError as e:
            raise ExperimentError(f"{path}: [data] path: {e}") from None
        _check_compatible(section_of("loss", c["loss"]), section_of("model", c["model"]), ds, err)
        datasets[dkey] = ds
    return datasets[dkey]


def _set_grid_keys(c: dict, n_train: int, axes: dict, path: Path, err) -> dict:
    """``c`` (in place) with what the grid sets per run: the batch size for ``n_train`` examples,
    one learning rate for random search, the ignored settings normalized, the file's digest."""
    bs = c["train"]["batch_size"]
    if bs != "full" and bs > n_train:
        err("sweep", "batch_size", f"{bs} is larger than the training set ({n_train} examples)")
    c["train"]["full_batch"] = bs == "full" or bs == n_train
    c["train"]["batch_size"] = n_train if bs == "full" else bs
    if c["optimizer"]["kind"] == "random_search":   # η is meaningless: keep one value
        c["optimizer"]["learning_rate"] = axes["optimizer.learning_rate"][0]
    normalize(c)
    if c["data"]["source"] == "file":
        c["data"]["sha256"] = datamod.file_sha256(path.parent / c["data"]["path"])
    for section in ("model", "loss"):
        if usercode.is_file(c[section]["kind"]):
            c[section]["sha256"] = _user_code(path, section, c[section]["kind"], err)
    if usercode.is_optax(c["optimizer"]["kind"]):
        try:
            usercode.check_optax(c["optimizer"]["kind"], usercode.options(c["optimizer"]))
        except usercode.UserCodeError as e:
            err("optimizer", "kind", str(e))
    return c


def _user_code(path: Path, section: str, kind: str, err) -> str:
    """Load the function ``kind`` names (a file beside the experiment's); its file's SHA-256."""
    try:
        return usercode.load(path.parent, kind)
    except usercode.UserCodeError as e:
        err(section, "kind", str(e))


def _check_user_runs(runs: list[Run], exp_datasets: dict, path: Path, err) -> dict[str, str]:
    """Every compiled group naming user code built and traced once (nothing trains); the files' texts."""
    checked, sources = set(), {}
    for run in runs:
        c = run.config
        kinds = [c[s]["kind"] for s in ("model", "loss", "optimizer")]
        key = group_key(c) if any(usercode.is_user(k) for k in kinds) else None
        if key is None or key in checked:
            continue
        checked.add(key)
        try:
            workload.check_user_code(c, exp_datasets[_data_key(c["data"])])
        except usercode.UserCodeError as e:
            section, problem = e.args if len(e.args) == 2 else ("model", e.args[0])
            err(section, "kind", f"{c[section]['kind']}: {problem}")
        for s in ("model", "loss"):
            if usercode.is_file(c[s]["kind"]):
                name, text = usercode.file_text(path.parent, c[s]["kind"])
                sources[name] = text
    return sources


def _auto_axes(parsed: config.Parsed, path: Path, datasets: dict, err) -> tuple[dict, auto.Placement | None]:
    """The axes with ``"auto"`` learning rates and batch sizes made concrete (``spec.auto``), before any hash."""
    axes = dict(parsed.axes)
    lr_key, bs_key, seed_key = (SWEPT_INTO[k] for k in ("learning_rate", "batch_size", "seeds"))
    lr_auto, bs_auto = axes[lr_key] == [auto.AUTO], axes[bs_key] == [auto.AUTO]
    if not (lr_auto or bs_auto):
        return axes, None
    others = {k: v for k, v in axes.items() if k not in (lr_key, bs_key, seed_key)}
    configs = []
    for point in _combos(others):  # every configuration but its learning rate, batch size and seed
        c = _with_values(parsed.config, {**point, lr_key: 1.0, bs_key: "full", seed_key: 0})
        ds = _dataset(c, path, datasets, err)
        configs.append((_set_grid_keys(c, ds.X_train.shape[0], axes, path, err), ds))
    if bs_auto:
        axes[bs_key] = auto.batch_sizes(min(ds.X_train.shape[0] for _, ds in configs))
    if not lr_auto:
        return axes, None
    for c, _ in configs:
        why = auto.no_bound(c["optimizer"]["kind"])
        if why:
            err("sweep", "learning_rate", f'"auto": {why}')
    try:
        placement = auto.place(configs, axes[seed_key])
    except ValueError as e:
        err("sweep", "learning_rate", f'"auto": {e}')
    axes[lr_key] = list(placement.learning_rates)
    return axes, placement


def load(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Read, validate and expand an experiment file.

    Args:
        path: the TOML file; relative data paths are relative to it.
        overrides: ``section.key=value`` strings, applied before validation.
    Returns:
        The ``Experiment`` with every run of the grid and the loaded data.
    Raises:
        ExperimentError: one line naming the file, the key and the problem.
    """
    path = Path(path)
    parsed = config.read(path, overrides)
    err = config.reporter(path)
    datasets: dict = {}
    axes, placement = _auto_axes(parsed, path, datasets, err)
    refine = parsed.refine
    if placement is not None and refine is None and parsed.config["train"]["targets"]:
        refine = refinemod.parse_settings({}, parsed.config["train"]["targets"])   # "auto" places, then refines
    base = normalize(resolve_defaults(copy.deepcopy(parsed.config)))
    runs, seen = [], set()
    for point in _combos(axes):
        c = _with_values(parsed.config, point)
        ds = _dataset(c, path, datasets, err)
        _set_grid_keys(c, ds.X_train.shape[0], axes, path, err)
        c["name"] = parsed.name
        c["swept"] = {k: v for k, v in point.items() if len(axes[k]) > 1}
        h = config_hash(c)
        if h not in seen:
            seen.add(h)
            runs.append(Run(c, h))
    if len({r.name for r in runs}) < len(runs):  # learning rates equal to 3 digits: say more
        runs = [dataclasses.replace(r, digits=6) for r in runs]
    sources = _check_user_runs(runs, datasets, path, err)
    return Experiment(path, parsed.name, parsed.description, base, axes, runs, datasets, refine, sources, placement)
