"""Experiment files: read and validate one (``--set`` overrides applied), write it back resolved.

One TOML file is one MLflow experiment. What it may hold, every key's default and check,
is declared once in ``spec.schema`` (and docs/experiments.md); an unknown section or key, a wrong type or a value
out of range raises ``ExperimentError`` whose one-line message names the file, the key
and the problem. What is swept (``[sweep]``) is data: a learning rate, a batch size, a
seed, or any other ``section.key`` given as a list. A config is a nested dict
``{section: {key: value}}``: it is what is hashed and logged, so it stays plain data
(``schema.spec_of`` gives its typed form).
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from bpresearch.keys import SWEPT_INTO
from bpresearch.spec import refine as refinemod
from bpresearch.spec import usercode
from bpresearch.spec.checks import Invalid, did_you_mean
from bpresearch.spec.resolve import applicable, applicable_keys, complete  # noqa: F401  (run/ and analysis/ read them here)
from bpresearch.spec.schema import SCHEMA, selector, user_code


class ExperimentError(ValueError):
    """A bad experiment file; the message is one line: ``FILE: [section] key: problem``."""


# ---------------------------------------------------------------- --set overrides
def check_override(text: str, key: str, user: set[str] = frozenset()):
    """Raise a one-line ``ExperimentError`` naming ``--set`` when ``key`` names no setting.

    A typo in ``--set trian.steps=50`` is the command line's, not the experiment file's.
    ``user``: the sections naming user code, which take any key (their function's arguments).
    """
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in user:
        return
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
    """``doc[section][key] = value`` for a dotted ``key`` (``sweep.optimizer.kind`` nests twice)."""
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
    """``{"optimizer": {"kind": v}}`` -> ``{"optimizer.kind": v}``; a range ``{min, max, …}`` stays one value."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not {"min", "max"} & v.keys():
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------- reading
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


def _document(path: Path, overrides) -> dict:
    """The file's TOML as a dict, with the ``--set`` overrides applied."""
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
    parsed = [(text, *parse_override(text)) for text in overrides]
    for text, key, value in parsed:
        _set_dotted(doc, key, value, f"{path}: --set {text}")
    user = user_sections(doc)
    for text, key, _ in parsed:
        check_override(text, key, user)
    return doc


def user_sections(doc: dict) -> set[str]:
    """The sections whose kind, written or swept, names user code (``spec.usercode``)."""
    sweep = _flatten(doc.get("sweep", {})) if isinstance(doc.get("sweep"), dict) else {}
    out = set()
    for section in SCHEMA:
        sel = selector(section)
        if not section or sel is None:
            continue
        given = doc.get(section, {}).get(sel) if isinstance(doc.get(section), dict) else None
        swept = sweep.get(f"{section}.{sel}", [])
        if any(usercode.is_user(k) for k in [given, *(swept if isinstance(swept, list) else [swept])]):
            out.add(section)
    return out


def _check_sections(doc: dict, err):
    """Every table of ``doc`` is a known section, every other top-level entry a known key."""
    for section, value in doc.items():
        if isinstance(value, dict):
            if section not in SCHEMA or section == "":
                err("", section, f"unknown section [{section}]{did_you_mean(section, SCHEMA)} (expected one of: "
                    f"{', '.join(s for s in SCHEMA if s)})")
        elif section not in SCHEMA[""]:
            err("", section, "unknown top-level key (expected name, description, or a [section])")


def _user_section(section: str, given: dict, err) -> dict:
    """A section naming user code: its kind and the keys declared for user code checked (or their
    defaults), every other key given kept unchecked: its function's keyword arguments."""
    keys, sel = SCHEMA[section], selector(section)
    out = {}
    for key, k in keys.items():
        if key == sel or k.when is user_code:
            out[key] = _checked(section, key, k, given, err)
    for key, v in given.items():
        if key in out:
            continue
        momentum = section == "optimizer" and key == "momentum"   # vmapped: one number
        if key in usercode.RESERVED and not momentum:
            err(section, key, "set by the harness for user code, not by the file")
        if momentum:
            v = _checked(section, key, keys[key], given, err)
        out[key] = v
    return out


def _checked(section: str, key: str, k, given: dict, err):
    """The given value of ``key`` checked, or its default."""
    if key not in given:
        return copy.deepcopy(k.default)
    try:
        return k.check(given[key])
    except Invalid as e:
        err(section, key, str(e))


def _section(section: str, given: dict, err, user: bool = False) -> dict:
    """One section's values: each given one checked, the rest their defaults; unknown keys refused.

    ``user``: its kind (written or swept) names user code: ``_user_section`` where written, and a
    swept one may not mix with built-in kinds, whose defaults would become its arguments."""
    sel = selector(section)
    if user and usercode.is_user(given.get(sel)):
        return _user_section(section, given, err)
    if user:
        err("sweep", f"{section}.{sel}", "user code and built-in kinds cannot be swept together "
            f"unless [{section}] {sel} names user code")
    keys, out = SCHEMA[section], {}
    for key, k in keys.items():
        if key in given:
            try:
                out[key] = k.check(given[key])
            except Invalid as e:
                err(section, key, str(e))
        else:
            out[key] = copy.deepcopy(k.default)
    if section:
        for key in given:
            if key not in keys:
                err(section, key, f"unknown key{did_you_mean(key, keys)} (expected one of: {', '.join(keys)})")
    return out


def _swept_values(key: str, raw, user: set[str] = frozenset()) -> list:
    """The values of one ``[sweep]`` entry: a grid axis or any other ``section.key``
    (any key of a section naming user code, ``user``: its function's argument)."""
    if key in SCHEMA["sweep"]:
        return SCHEMA["sweep"][key].check(raw)
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in user and parts[1] not in SCHEMA[parts[0]]:
        if parts[1] in usercode.RESERVED:
            raise Invalid("set by the harness for user code, not swept")
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise Invalid("must not be empty")
        return values
    if len(parts) != 2 or parts[0] not in SCHEMA or parts[0] in ("", "sweep") or parts[1] not in SCHEMA[parts[0]]:
        raise Invalid("unknown swept key (expected learning_rate, batch_size, seeds, "
                      "or section.key such as optimizer.kind)")
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise Invalid("must not be empty")
    check = SCHEMA[parts[0]][parts[1]].check
    return [check(v) for v in values]


def _axes(sweep: dict, err, user: set[str] = frozenset()) -> dict[str, list]:
    """Dotted key -> swept values; learning rate, batch size and seeds always (their defaults if unset)."""
    sweep = _flatten(sweep)
    for key, k in SCHEMA["sweep"].items():
        sweep.setdefault(key, k.default)
    axes = {}
    for key, raw in sweep.items():
        try:
            axes[SWEPT_INTO.get(key, key)] = _swept_values(key, raw, user)
        except Invalid as e:
            err("sweep", key, str(e))
    return axes


def _refine(raw, cfg: dict, axes: dict, err) -> refinemod.Settings | None:
    """``[sweep] refine``: not part of any run's config, so adding it changes no hash."""
    if raw is None:
        return None
    try:
        settings = refinemod.parse_settings(raw, cfg["train"]["targets"])
    except ValueError as e:
        err("sweep", *str(e).split(": ", 1))
    if all(k == "random_search" for k in axes.get("optimizer.kind", [cfg["optimizer"]["kind"]])):
        err("sweep", "refine", "random_search ignores the learning rate; nothing to refine")
    return settings


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
    doc = _document(path, overrides)
    _check_sections(doc, err)
    user = user_sections(doc)
    cfg = {s: _section(s, doc if s == "" else doc.get(s, {}), err, s in user) for s in SCHEMA if s != "sweep"}
    top = cfg.pop("")
    if top["name"] is None:
        err("", "name", "missing: every experiment needs a name")
    if not top["name"].strip():
        err("", "name", "must not be empty")
    sweep = dict(doc.get("sweep", {}))
    refine_raw = sweep.pop("refine", None)  # how to add learning rates, not a swept key
    axes = _axes(sweep, err, user)
    for s in user:
        if not all(usercode.is_user(k) for k in axes.get(f"{s}.{selector(s)}", [])):
            err("sweep", f"{s}.{selector(s)}", "user code and built-in kinds cannot be swept together")
    return Parsed(top["name"], top["description"], cfg, axes, _refine(refine_raw, cfg, axes, err))


# ---------------------------------------------------------------- resolved TOML
def _toml_value(v) -> str:
    """A value as TOML: booleans, numbers, strings and lists of them."""
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
