"""Functions of the declarations (``spec.schema``) over config dicts.

``resolve_defaults`` fills the defaults that follow other settings, ``normalize`` gives the
settings a run ignores one value, ``applicable`` keeps what means something for a run's
data source, model and optimizer, ``complete`` undoes that for a logged config.
"""

from __future__ import annotations

import copy

from bpresearch.spec import usercode
from bpresearch.spec.schema import SCHEMA, SECTIONS, declared, selector, user_code
from bpresearch.spec.schema import applies_to as _applies_to


def resolve_defaults(cfg: dict) -> dict:
    """``cfg`` (in place) with every derived default filled and unset optional keys left out.

    Keys added after configs were first hashed (``omit_unset``) are absent while unset, so
    the configs of older files keep their hash and a sweep still resumes.
    """
    for section, keys in SCHEMA.items():
        values = cfg.get(section)
        if not isinstance(values, dict):
            continue
        for name, k in keys.items():
            if k.derive is not None and name in values and values[name] is None:
                values[name] = k.derive(cfg)
        for name, k in keys.items():
            if k.omit_unset and name in values and values[name] is None:
                del values[name]
    return cfg


def normalize(cfg: dict) -> dict:
    """``cfg`` (in place) with the settings its choices ignore set to their ``idle`` value,
    so that they neither split groups nor mislead (momentum is 0 for Adam). A section naming
    user code keeps what its file set (``momentum`` of ``optax:sgd``)."""
    for section, keys in SCHEMA.items():
        sel = selector(section)
        values = cfg.get(section)
        if sel is None or not isinstance(values, dict):
            continue
        user = usercode.is_user(values.get(sel))
        for name, k in keys.items():
            if k.idle is not None and not _applies_to(k, values.get(sel)) and not (user and name in values):
                values[name] = k.idle
    return cfg


def applicable_keys(cfg: dict) -> set[tuple[str, str]]:
    """``(section, key)`` of every setting that applies to this resolved config.

    The rest are defaults for other choices (``model.start`` of an MLP, the teacher's
    ``n_train`` for digits): they stay in the config and its hash (so stores resume), but
    are neither logged as params nor shown in resolved configs.
    """
    out = set()
    for section, values in cfg.items():
        if not isinstance(values, dict) or section not in SECTIONS:
            continue
        keys, sel = declared(section), selector(section)
        if user_code(values):   # what its file wrote, and what the harness set
            out |= {(section, n) for n in values if n != "momentum" or usercode.takes_momentum(values[sel])}
            continue
        for name in values:
            k = keys.get(name)
            if k is None or (_applies_to(k, values.get(sel)) and (k.when is None or k.when(values))):
                out.add((section, name))
    return out


def applicable(cfg: dict, keys: set[tuple[str, str]] | None = None) -> dict:
    """``cfg`` without the settings that do not apply to it (``keys``: which to keep).

    Top-level entries outside the sections (``name``, ``swept``) pass unchanged.
    """
    keys = applicable_keys(cfg) if keys is None else keys
    return {s: ({k: v for k, v in vals.items() if (s, k) in keys} if isinstance(vals, dict) and s in SECTIONS
                else vals)
            for s, vals in cfg.items()}


def complete(cfg: dict) -> dict:
    """A logged (``applicable``) config with the keys it left out set back to what the run had:
    their defaults (or ``idle`` values), so that code building a model or data set from it finds
    every key (they do not apply)."""
    out = copy.deepcopy(cfg)
    for section, keys in SCHEMA.items():
        if section in ("", "sweep") or not isinstance(out.get(section), dict):
            continue
        if user_code(out[section]):
            continue   # a user-code section holds what its file wrote; typed defaults come from ``section_of``
        for name, k in keys.items():
            out[section].setdefault(name, copy.deepcopy(k.default))
    return normalize(resolve_defaults(out))
