"""Experiment files: the schema with its defaults, value checks, ``--set`` overrides, TOML out.

One TOML file is one MLflow experiment. Every key has a default (``SCHEMA``, and
docs/experiments.md); an unknown section or key, a wrong type or a value out of range raises
``ExperimentError`` whose one-line message names the file, the key and the problem.
What is swept (``[sweep]``) is data: a learning rate, a batch size, a seed, or any other
``section.key`` given as a list. A config is a nested dict ``{section: {key: value}}``:
it is what is hashed and logged, so it stays plain data.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from bpresearch.core.activations import ACTIVATIONS
from bpresearch.core.models import INITS
from bpresearch.core.optim import OPTIMIZERS
from bpresearch.keys import SWEPT_INTO
from bpresearch.spec import refine as refinemod


class ExperimentError(ValueError):
    """A bad experiment file; the message is one line: ``FILE: [section] key: problem``."""


# ---------------------------------------------------------------- value checks
class Invalid(Exception):
    pass


INT_MAX = 2**31 - 1  # counts, sizes and seeds become int32 inside the compiled program


def _int(lo=None, hi=INT_MAX):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise Invalid(f"must be an integer, got {v!r}")
        if lo is not None and v < lo:
            raise Invalid(f"must be ≥ {lo}, got {v}")
        if v > hi:
            raise Invalid(f"must be ≤ {hi}, got {v}")
        return v
    return check


def _float(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise Invalid(f"must be finite, got {v}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise Invalid(f"must be {'>' if lo_open else '≥'} {lo}, got {v:g}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise Invalid(f"must be {'<' if hi_open else '≤'} {hi}, got {v:g}")
        return v
    return check


def _str(v):
    if not isinstance(v, str):
        raise Invalid(f"must be a string, got {v!r}")
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise Invalid(f"must be true or false, got {v!r}")
    return v


def _choice(*options):
    def check(v):
        if v not in options:
            raise Invalid(f"must be one of {', '.join(map(str, options))}; got {v!r}")
        return v
    return check


def _list(item, min_len=0, exact_len=None):
    def check(v):
        if not isinstance(v, list):
            raise Invalid(f"must be a list, got {v!r}")
        if exact_len is not None and len(v) != exact_len:
            raise Invalid(f"must have {exact_len} elements, got {len(v)}")
        if len(v) < min_len:
            raise Invalid(f"must have at least {min_len} element(s)")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except Invalid as e:
                raise Invalid(f"element {i}: {e}") from None
        return out
    return check


def _optional(check):
    return lambda v: None if v is None else check(v)


_positive_lr = _float(lo=0.0, lo_open=True)

# section -> key -> (default, check). A default of None is resolved from other keys
# in ``resolve_defaults`` (for example the loss follows the data set).
SCHEMA: dict[str, dict[str, tuple[Any, Callable]]] = {
    "": {
        "name": (None, _str),                      # required: the MLflow experiment's name
        "description": ("", _str),                 # shown in `bpresearch list` and the report
    },
    "data": {
        "source": ("digits", _choice("digits", "teacher", "file", "seed")),  # bundled, needs no file
        "path": (None, _optional(_str)),            # file: .npz (X, y[, X_test, y_test]) or .csv
        "target_column": ("y", _str),              # file (.csv): the column holding the target
        "test_fraction": (None, _optional(_float(lo=0.0, hi=1.0, hi_open=True))),  # digits 0.2, file 0
        "split_seed": (0, _int(lo=0)),             # digits/file: which fixed split
        "n_train": (256, _int(lo=1)),              # teacher: training examples
        "n_test": (0, _int(lo=0)),                 # teacher: test examples
        "n_features": (8, _int(lo=1)),             # teacher: input dimension
        "noise": (0.0, _float(lo=0.0)),            # teacher: std of the noise on targets
        "teacher_activation": ("identity", _choice(*ACTIVATIONS)),  # teacher: F of y = F(X·w* + b*)
        "teacher_bias": (False, _bool),            # teacher: b* ~ N(0, 1) when true, else 0
        "seed": (0, _int(lo=0)),                   # teacher: data seed, fixed across runs
        "target": (-10.0, _float()),               # seed: the worked example's Target
    },
    "model": {
        "kind": ("mlp", _choice("neuron", "mlp", "seed_graph")),  # the digits default's network
        "activation": (None, _optional(_choice(*ACTIVATIONS))),  # neuron: identity, mlp: relu
        "bias": (True, _bool),                     # neuron: false is the seed's b = 0
        "init": (None, _optional(_choice(*INITS))),  # neuron: zeros, mlp: glorot
        "init_scale": (1.0, _float(lo=0.0, lo_open=True)),  # std of init = "normal"
        "hidden": ([64, 32], _list(_int(lo=1))),   # mlp: hidden widths
        "start": ([-2.0, 5.0, -4.0], _list(_float(), exact_len=3)),  # seed_graph: x, y, z
    },
    "loss": {
        "kind": (None, _optional(_choice("half_mse", "cross_entropy"))),  # digits: cross_entropy
    },
    "optimizer": {
        "kind": ("sgd", _choice(*OPTIMIZERS)),    # plain gradient descent, the seed's method
        "momentum": (0.9, _float(lo=0.0, hi=1.0, hi_open=True)),  # momentum: heavy-ball β
        "b1": (0.9, _float(lo=0.0, hi=1.0, hi_open=True)),        # adam
        "b2": (0.999, _float(lo=0.0, hi=1.0, hi_open=True)),      # adam
        "eps": (1e-8, _float(lo=0.0, lo_open=True)),              # adam
        "search_scale": (1.0, _float(lo=0.0, lo_open=True)),      # random_search: std of draws
    },
    "train": {
        "steps": (1000, _int(lo=1)),               # updates per run; batch size 1 needs many
        "eval_every": (10, _int(lo=1)),            # full-set losses every E steps (and the last)
        "targets": ([], _list(_float(lo=0.0, lo_open=True))),  # full-training-loss targets
        "divergence_factor": (1e3, _float(lo=1.0, lo_open=True)),  # loss > factor·max(L0,1) diverges
        "log_dense": (200, _int(lo=0)),            # train_loss/grad_norm logged at every step up to here
        "log_every": ("auto", lambda v: v if v == "auto" else _int(lo=1)(v)),  # then every N ("auto": ≈ 800 more)
        "chunk": (64, _int(lo=1)),                 # configurations per compiled call (bounds memory)
        # "When the gradient is small enough, we call it the minimum" (docs/seed.md §3): the first
        # step whose full-batch gradient norm is below grad_tol is recorded (steps_to_grad_tol);
        # the run still takes all its steps. Unset (None) it is absent from the resolved config.
        "grad_tol": (None, _optional(_float(lo=0.0, lo_open=True))),
    },
    "diagnostics": {                               # off unless asked for (they cost compute)
        "every": (100, _int(lo=1)),                # steps between measurements; step 0 always included
        "sharpness": (False, _bool),               # top Hessian eigenvalue; over training in full-batch runs
        "noise_scale": (False, _bool),             # gradient noise scale B_simple (exact, per-example)
        "lanczos_iters": (20, _int(lo=2)),         # Hessian-vector products per sharpness measurement
        "hessian_noise_scale": (False, _bool),     # B_noise = tr(HΣ)/(GᵀHG), exact: N HVPs per measurement
    },
    "sweep": {
        "learning_rate": ([0.1], None),            # a list, or {min, max, num, scale = "log"|"linear"}
        "batch_size": (["full"], None),            # ints and/or "full"
        "seeds": (1, None),                        # a count (0..n-1) or a list
    },
}

# Keys added after configs were first hashed: while unset (None) they are left out of the
# resolved config, so the configs of older files keep their hash (a sweep still resumes).
OMITTED_WHEN_UNSET = (("train", "grad_tol"),)

# Which keys of a section mean something, given the data source, model and optimizer the
# config names. The rest are defaults for other choices ("model.start" of an MLP, the
# teacher's n_train for digits): they stay in the config and its hash (so stores resume),
# but are neither logged as params nor shown in resolved configs (``applicable``).
APPLIES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "data": ("source", {
        "digits": ("test_fraction", "split_seed"),
        "teacher": ("n_train", "n_test", "n_features", "noise", "teacher_activation", "teacher_bias", "seed"),
        "file": ("path", "target_column", "test_fraction", "split_seed", "sha256"),
        "seed": ("target",),
    }),
    "model": ("kind", {
        "neuron": ("activation", "bias", "init", "init_scale"),
        "mlp": ("hidden", "activation", "init", "init_scale"),
        "seed_graph": ("start",),
    }),
    "optimizer": ("kind", {
        "sgd": ("learning_rate",),
        "momentum": ("learning_rate", "momentum"),
        "adam": ("learning_rate", "b1", "b2", "eps"),
        "random_search": ("learning_rate", "search_scale"),
    }),
}


def applicable_keys(cfg: dict) -> set[tuple[str, str]]:
    """``(section, key)`` of every setting that applies to this resolved config."""
    out = set()
    for section, values in cfg.items():
        if not isinstance(values, dict) or section == "swept":
            continue
        if section in APPLIES:
            choice, table = APPLIES[section]
            keys = {choice, *table.get(values.get(choice), values)}
        else:
            keys = set(values)
        if section == "model" and values.get("init") != "normal":
            keys.discard("init_scale")          # only the normal init has a scale
        if section == "data" and not str(values.get("path") or "").endswith(".csv"):
            keys.discard("target_column")       # .npz files name their arrays X and y
        if section == "diagnostics":
            if not values.get("sharpness"):
                keys.discard("lanczos_iters")   # Lanczos steps of the sharpness measurement
            if not any(values.get(k) for k in ("sharpness", "noise_scale", "hessian_noise_scale")):
                keys.discard("every")
        out |= {(section, k) for k in keys if k in values}
    return out


def applicable(cfg: dict, keys: set[tuple[str, str]] | None = None) -> dict:
    """``cfg`` without the settings that do not apply to it (``keys``: which to keep).

    Sections and top-level entries outside the schema (``name``, ``swept``) pass unchanged.
    """
    keys = applicable_keys(cfg) if keys is None else keys
    return {s: ({k: v for k, v in vals.items() if (s, k) in keys} if isinstance(vals, dict) and s in SCHEMA else vals)
            for s, vals in cfg.items()}


def complete(cfg: dict) -> dict:
    """A logged (``applicable``) config with the keys it left out set back to their defaults,
    so that code building a model or data set from it finds every key (they do not apply)."""
    out = copy.deepcopy(cfg)
    for section, keys in SCHEMA.items():
        if section in ("", "sweep") or not isinstance(out.get(section), dict):
            continue
        for key, (default, _) in keys.items():
            out[section].setdefault(key, copy.deepcopy(default))
    return resolve_defaults(out)


def did_you_mean(word: str, options) -> str:
    """`` (did you mean 'train'?)`` when ``word`` is a likely typo of one of ``options``, else ``""``."""
    close = difflib.get_close_matches(word, [o for o in options if o], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_override(text: str, key: str):
    """Raise a one-line ``ExperimentError`` naming ``--set`` when ``key`` names no setting.

    A typo in ``--set trian.steps=50`` is the command line's, not the experiment file's.
    """
    parts = key.split(".")
    sections = [s for s in SCHEMA if s]
    if len(parts) == 1:
        if key not in SCHEMA[""]:
            raise ExperimentError(f"--set {text}: unknown key {key!r} (expected section.key)"
                                  f"{did_you_mean(key, [*SCHEMA[''], *sections])}")
        return
    section, rest = parts[0], parts[1:]
    if section not in SCHEMA:
        raise ExperimentError(f"--set {text}: unknown section {section!r}"
                              f"{did_you_mean(section, sections) or ' (expected one of: ' + ', '.join(sections) + ')'}")
    if section == "sweep":
        if len(rest) == 1 and rest[0] in (*SCHEMA["sweep"], "refine"):   # refine: how to add learning rates
            return
        if len(rest) == 2 and rest[0] in sections and rest[0] != "sweep" and rest[1] in SCHEMA[rest[0]]:
            return
        name = ".".join(rest)
        raise ExperimentError(f"--set {text}: unknown swept key {name!r}"
                              f"{did_you_mean(name, [*SCHEMA['sweep'], *(f'{s}.{k}' for s in sections if s != 'sweep' for k in SCHEMA[s])])}")
    if len(rest) != 1 or rest[0] not in SCHEMA[section]:
        name = ".".join(rest)
        raise ExperimentError(f"--set {text}: unknown key {name!r} in [{section}]{did_you_mean(name, SCHEMA[section])}")


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value``; the value is read as TOML, or as a bare string."""
    if "=" not in text:
        raise ExperimentError(f"--set {text}: expected section.key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _set_dotted(doc: dict, key: str, value, where: str):
    parts = key.split(".")
    if len(parts) == 1:
        doc[key] = value
        return
    if len(parts) > 3 or (len(parts) == 3 and parts[0] != "sweep"):
        raise ExperimentError(f"{where}: {key}: expected section.key")
    node = doc
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ExperimentError(f"{where}: {key}: {p} is not a section")
    node[parts[-1]] = value


def _flatten(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not {"min", "max"} & v.keys():
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _lr_values(v) -> list[float]:
    if isinstance(v, dict):
        unknown = set(v) - {"min", "max", "num", "scale"}
        if unknown:
            raise Invalid(f"unknown range key {sorted(unknown)[0]!r} (expected min, max, num, scale)")
        for k in ("min", "max", "num"):
            if k not in v:
                raise Invalid(f"range needs {k!r}")
        lo, hi = _positive_lr(v["min"]), _positive_lr(v["max"])
        num = _int(lo=1)(v["num"])
        scale = _choice("log", "linear")(v.get("scale", "log"))
        if hi < lo:
            raise Invalid(f"empty range: max {hi:g} < min {lo:g}")
        if num > 1 and hi == lo:
            raise Invalid("empty range: min equals max but num > 1")
        grid = np.geomspace(lo, hi, num) if scale == "log" else np.linspace(lo, hi, num)
        return [float(f"{x:.6g}") for x in grid]
    vals = _list(_positive_lr, min_len=1)(v if isinstance(v, list) else [v])
    return vals


def _batch_values(v) -> list:
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise Invalid("must not be empty")
    return [x if x == "full" else _int(lo=1)(x) for x in vals]


def _seed_values(v) -> list[int]:
    if isinstance(v, list):
        return _list(_int(lo=0), min_len=1)(v)
    return list(range(_int(lo=1)(v)))


def resolve_defaults(cfg: dict) -> dict:
    d, m, l = cfg["data"], cfg["model"], cfg["loss"]
    if d["test_fraction"] is None:
        d["test_fraction"] = 0.2 if d["source"] == "digits" else 0.0
    if m["activation"] is None:
        m["activation"] = "relu" if m["kind"] == "mlp" else "identity"
    if m["init"] is None:
        m["init"] = "glorot" if m["kind"] == "mlp" else "zeros"
    if l["kind"] is None:
        l["kind"] = "cross_entropy" if d["source"] == "digits" else "half_mse"
    for section, key in OMITTED_WHEN_UNSET:
        if cfg[section].get(key, 0) is None:
            del cfg[section][key]
    return cfg


def normalize(cfg: dict) -> dict:
    """Settings an optimizer ignores get one value, so they neither split groups nor mislead."""
    if cfg["optimizer"]["kind"] != "momentum":
        cfg["optimizer"]["momentum"] = 0.0
    return cfg


class Parsed(NamedTuple):
    """An experiment file, validated: what ``experiment.load`` expands into runs."""
    name: str
    description: str
    config: dict            # every section with defaults filled in, before the sweep
    axes: dict[str, list]   # dotted key -> swept values (learning rate, batch size, seed always)
    refine: refinemod.Settings | None = None   # [sweep] refine: learning rates added per group


def reporter(path: Path):
    """``err(section, key, problem)``, raising the one-line ``ExperimentError`` for ``path``."""

    def err(section, key, problem):
        where = f"[{section}] {key}" if section else key
        raise ExperimentError(f"{path}: {where}: {problem}")

    return err


def read(path: str | Path, overrides: list[str] = ()) -> Parsed:
    """Read and validate an experiment file; the grid is not expanded yet.

    Args:
        path: the TOML file.
        overrides: ``section.key=value`` strings, applied before validation.
    Returns:
        ``Parsed``: name, description, the config without swept values, the axes.
    Raises:
        ExperimentError: one line naming the file, the key and the problem.
    """
    path = Path(path)
    err = reporter(path)

    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ExperimentError(f"{path}: is a directory, expected a .toml file") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{path}: not a text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{path}: invalid TOML: {e}") from None
    for text in overrides:
        key, value = parse_override(text)
        check_override(text, key)
        _set_dotted(doc, key, value, f"{path}: --set {text}")

    # sections and keys
    cfg: dict[str, Any] = {}
    for section, value in doc.items():
        if isinstance(value, dict):
            if section not in SCHEMA or section == "":
                err("", section, f"unknown section [{section}]{did_you_mean(section, SCHEMA)} (expected one of: "
                    f"{', '.join(s for s in SCHEMA if s)})")
        elif section not in SCHEMA[""]:
            err("", section, "unknown top-level key (expected name, description, or a [section])")
    for section, keys in SCHEMA.items():
        if section == "sweep":
            continue
        given = doc if section == "" else doc.get(section, {})
        out = {}
        for key, (default, check) in keys.items():
            if key in given:
                try:
                    out[key] = check(given[key])
                except Invalid as e:
                    err(section, key, str(e))
            else:
                out[key] = copy.deepcopy(default)
        if section:
            for key in given:
                if key not in keys:
                    err(section, key, f"unknown key{did_you_mean(key, keys)} (expected one of: {', '.join(keys)})")
        cfg[section] = out
    top = cfg.pop("")
    if top["name"] is None:
        err("", "name", "missing: every experiment needs a name")
    if not top["name"].strip():
        err("", "name", "must not be empty")

    # the sweep: learning_rate, batch_size, seeds and any other section.key = [values]
    axes: dict[str, list] = {}
    sweep_doc = dict(doc.get("sweep", {}))
    refine_raw = sweep_doc.pop("refine", None)  # how to add learning rates, not a swept key
    sweep = _flatten(sweep_doc)
    for key, (default, _) in SCHEMA["sweep"].items():
        sweep.setdefault(key, default)
    for key, raw in sweep.items():
        try:
            if key == "learning_rate":
                axes[SWEPT_INTO[key]] = _lr_values(raw)
            elif key == "batch_size":
                axes[SWEPT_INTO[key]] = _batch_values(raw)
            elif key == "seeds":
                axes[SWEPT_INTO[key]] = _seed_values(raw)
            else:
                parts = key.split(".")
                if len(parts) != 2 or parts[0] not in SCHEMA or parts[0] in ("", "sweep") \
                        or parts[1] not in SCHEMA[parts[0]]:
                    raise Invalid("unknown swept key (expected learning_rate, batch_size, seeds, "
                                  "or section.key such as optimizer.kind)")
                values = raw if isinstance(raw, list) else [raw]
                if not values:
                    raise Invalid("must not be empty")
                check = SCHEMA[parts[0]][parts[1]][1]
                axes[key] = [check(v) for v in values]
        except Invalid as e:
            err("sweep", key, str(e))
    settings = None
    if refine_raw is not None:   # not part of any run's config: adding it changes no hash
        try:
            settings = refinemod.parse_settings(refine_raw, cfg["train"]["targets"])
        except ValueError as e:
            err("sweep", *str(e).split(": ", 1))
        if all(k == "random_search" for k in axes.get("optimizer.kind", [cfg["optimizer"]["kind"]])):
            err("sweep", "refine", "random_search ignores the learning rate; nothing to refine")
    return Parsed(top["name"], top["description"], cfg, axes, settings)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(exp) -> str:
    """The resolved experiment file (of an ``experiment.Experiment``): every default filled in, overrides applied."""
    lines = [f"# resolved from {exp.path}", f"name = {_toml_value(exp.name)}",
             f"description = {_toml_value(exp.description)}"]
    keep = set().union(*(applicable_keys(r.config) for r in exp.runs)) if exp.runs else None
    base = applicable(exp.base, keep) if keep is not None else exp.base
    for section, values in base.items():
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    lines += ["", "[sweep]"]
    for dotted, values in exp.axes.items():
        key = next((k for k, v in SWEPT_INTO.items() if v == dotted), f'"{dotted}"')
        lines.append(f"{key} = {_toml_value(values)}")
    if getattr(exp, "refine", None) is not None:
        r = exp.refine
        extra = "" if r.per_round is None else f", per_round = {r.per_round}"
        lines.append(f"refine = {{ target = {_toml_value(list(r.targets))}, resolution = {r.resolution!r}, "
                     f"max_rounds = {r.max_rounds}{extra} }}")
    return "\n".join(lines) + "\n"
