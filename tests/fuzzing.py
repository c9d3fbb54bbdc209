"""Hypothesis strategies for hostile input: experiment documents, TOML text, ``--set`` strings, data files.

Shared by the fuzz tests. The settings are fixed (``derandomize``: the same examples on
every machine and every run), so a failure in CI reproduces locally as is; set
``BPRESEARCH_FUZZ_EXAMPLES`` to run more examples (with the same determinism).
"""

from __future__ import annotations

import json
import math
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bpresearch.spec import config

FUZZ = settings(max_examples=int(os.environ.get("BPRESEARCH_FUZZ_EXAMPLES", "40")), derandomize=True,
                deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# A small valid experiment that dry-runs in milliseconds; mutations start from it.
BASE = {
    "name": "fuzz",
    "data": {"source": "teacher", "n_train": 16, "n_features": 3},
    "model": {"kind": "neuron"},
    "train": {"steps": 3, "eval_every": 1},
    "sweep": {"learning_rate": [0.1], "batch_size": [4, "full"]},
}

SECTIONS = [s for s in config.SCHEMA if s] + ["", "Data", "sweep", "unknown", "ü"]
KEYS = sorted({k for keys in config.SCHEMA.values() for k in keys}) + [
    "optimizer.kind", "model.activation", "train.steps", "model.hidden", "min", "max", "num", "scale"]

# Numbers at the edges: huge, tiny, negative, non-finite, the int32/int64 limits.
EDGE_INTS = [0, 1, -1, 2, 3, 17, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 10**30]
EDGE_FLOATS = [0.0, -0.0, 1e-300, 5e-324, 1e-45, 1e308, 1.7976931348623157e308, 3.5e38, -1e308,
               math.inf, -math.inf, math.nan, 0.5, 1.0, 1e-8]

DATETIME = object()
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.sampled_from(EDGE_INTS), st.integers(-10**6, 10**6), st.sampled_from(EDGE_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), text,
    st.sampled_from(["full", "auto", "log", "linear", "sgd", "adam", "momentum", "random_search", "mlp",
                     "neuron", "seed_graph", "relu", "tanh", "digits", "teacher", "file", "seed",
                     "cross_entropy", "half_mse", "normal", "zeros", "glorot", "", " "]),
    st.just(DATETIME),               # written as a TOML datetime literal
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), text), inner, max_size=3)), max_leaves=8)


SCHEMA_KEYS = [(s, k) for s, keys in config.SCHEMA.items() for k in keys]
SWEPT = ["learning_rate", "batch_size", "seeds"] + [f"{s}.{k}" for s, k in SCHEMA_KEYS if s not in ("", "sweep")]
words = st.sampled_from(["full", "auto", "log", "linear", "sgd", "adam", "momentum", "random_search", "mlp",
                         "neuron", "seed_graph", "relu", "tanh", "sigmoid", "identity", "teacher", "seed",
                         "cross_entropy", "half_mse", "normal", "zeros", "glorot", "", " "])
numbers = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-3, 40), st.sampled_from(EDGE_FLOATS),
                    st.floats(1e-3, 10.0))
plausible = st.one_of(numbers, words, st.booleans(), st.lists(st.one_of(numbers, words), max_size=3),
                      st.fixed_dictionaries({"min": numbers, "max": numbers, "num": numbers},
                                            optional={"scale": words, "extra": numbers}))


def typed(section: str, key: str):
    """Values of the default's type (edge cases included), so that many edits stay valid."""
    default = config.SCHEMA[section][key].default
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(st.integers(0, 20), st.sampled_from(EDGE_INTS))
    if isinstance(default, float):
        return st.one_of(st.floats(1e-6, 2.0), st.sampled_from(EDGE_FLOATS))
    if isinstance(default, list):
        return st.lists(st.one_of(st.integers(1, 9), st.floats(1e-3, 9.0), st.sampled_from(EDGE_FLOATS)),
                        max_size=4)
    return words


@st.composite
def documents(draw) -> dict:
    """BASE after 1–4 edits: mostly a known key set to an edge value; sometimes unknown keys,
    deleted keys, retyped sections, random nesting and unicode."""
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["known"] * 6 + ["swept"] * 3 + ["delete", "junk", "section", "name"]))
        if action == "name":
            doc[draw(st.sampled_from(["name", "description"]))] = draw(st.one_of(text, values))
        elif action == "known":
            section, key = draw(st.sampled_from([sk for sk in SCHEMA_KEYS if sk[0] not in ("", "sweep")]))
            target = doc.setdefault(section, {})
            if isinstance(target, dict):
                target[key] = draw(st.one_of(typed(section, key), typed(section, key), plausible, values))
        elif action == "swept":
            target = doc.setdefault("sweep", {})
            if isinstance(target, dict):
                target[draw(st.sampled_from(SWEPT))] = draw(st.one_of(st.lists(plausible, min_size=1, max_size=3),
                                                                      plausible))
        elif action == "delete":
            section, key = draw(st.sampled_from(SCHEMA_KEYS))
            target = doc if section == "" else doc.get(section, {})
            if isinstance(target, dict):
                target.pop(key, None)
        elif action == "junk":  # an unknown or mistyped key, anywhere
            section = draw(st.sampled_from(SECTIONS))
            target = doc.setdefault(section, {}) if section else doc
            if isinstance(target, dict):
                target[draw(st.one_of(st.sampled_from(KEYS), text))] = draw(values)
        else:
            doc[draw(st.sampled_from(SECTIONS[:-3]))] = draw(values)
    return doc


def _key(k: str) -> str:
    return _string(k)


def _string(s: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also forbids raw DEL."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def value_text(v) -> str:
    if v is DATETIME:
        return "1979-05-27T07:32:00Z"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {value_text(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict) -> str:
    """Scalars first, then one ``[table]`` per dict (nested dicts inline)."""
    lines = [f"{_key(k)} = {value_text(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{_key(k)}]")
            lines += [f"{_key(kk)} = {value_text(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


@st.composite
def toml_texts(draw) -> str:
    """A document as TOML, sometimes truncated or with random characters spliced in."""
    t = to_toml(draw(documents()))
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "splice"]))
    if damage == "truncate":
        t = t[:draw(st.integers(0, len(t)))]
    elif damage == "splice":
        i = draw(st.integers(0, len(t)))
        t = t[:i] + draw(st.text(min_size=1, max_size=5)) + t[i:]
    return t


DOTTED = [f"{s}.{k}" for s, keys in config.SCHEMA.items() if s for k in keys] + [
    "name", "description", "sweep.optimizer.kind", "sweep.learning_rate.min", "a.b.c.d", "", ".", "train.",
    ".steps", "sweep.model.hidden", "name.x"]
fragments = st.one_of(values.map(value_text), text,
                      st.sampled_from(["[", "{", "]", "'", '"', "=", "1e999", "0x10", "1_000", "nan", "inf",
                                       "[0.1, 'full']", "{min = 0.1, max = 1}", "1979-05-27", "-", "--", "1,2"]))


@st.composite
def overrides(draw) -> str:
    """One ``--set`` string: a schema key (or junk), ``=`` (usually), a TOML fragment (or junk)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.sampled_from(DOTTED), text))
    if draw(st.integers(0, 2)):  # a known key, a value of its type (or any value)
        section, key = draw(st.sampled_from([sk for sk in SCHEMA_KEYS if sk[0] not in ("", "sweep")]))
        return f"{section}.{key}={draw(st.one_of(typed(section, key).map(value_text), fragments))}"
    key = draw(st.one_of(st.sampled_from(DOTTED), st.sampled_from(DOTTED), text))
    return f"{key}{draw(st.sampled_from(['=', ' = ', '==']))}{draw(fragments)}"


# ---------------------------------------------------------------- data files
import io  # noqa: E402

import numpy as np  # noqa: E402

DTYPES = ["float64", "float32", "float16", "int8", "int32", "int64", "uint64", "bool", "complex64", "U3",
          "datetime64[s]", "object"]
ARRAY_NAMES = ["X", "y", "X_test", "y_test", "x", "Y", "extra"]
CELLS = [0.0, 1.0, -1.0, 2.0, 3.0, math.nan, math.inf, -math.inf, 1e308, -1e39, 5e-324, 2.0**31, 7.0]


@st.composite
def arrays(draw) -> np.ndarray:
    """An array of a random dtype and shape (0–3 dims, sides 0–6), with NaN, inf and huge values."""
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    n = int(np.prod(shape)) if shape else 1
    cells = draw(st.lists(st.sampled_from(CELLS), min_size=n, max_size=n))
    base = np.array(cells, np.float64).reshape(shape)
    if dtype == "object":
        return np.array(base, dtype=object)
    if dtype in ("U3", "datetime64[s]"):
        return np.zeros(shape, dtype)
    with np.errstate(all="ignore"):
        return np.nan_to_num(base, nan=0, posinf=1, neginf=-1).astype(dtype) if dtype[0] in "iub" else \
            base.astype(dtype)


@st.composite
def poisoned(draw, n: int) -> list[float]:
    """n plain numbers, one of them (sometimes) replaced by NaN, inf, a huge or a subnormal value."""
    out = draw(st.lists(st.floats(-9.0, 9.0), min_size=n, max_size=n))
    if n and draw(st.booleans()):
        out[draw(st.integers(0, n - 1))] = draw(st.sampled_from(CELLS))
    return out


@st.composite
def npz_files(draw) -> bytes:
    """A .npz archive of random arrays (usually an X and a y of matching rows), sometimes damaged."""
    if draw(st.integers(0, 3)):  # plausible: X (n, d), y (n,), perhaps a test split
        n, d = draw(st.integers(0, 6)), draw(st.integers(0, 3))
        X = draw(arrays().filter(lambda a: True)) if draw(st.integers(0, 4)) == 0 else \
            np.array(draw(poisoned(n * d)), np.float64).reshape(n, d)
        y = np.array(draw(st.lists(st.sampled_from(CELLS[:5] + [7.0]), min_size=n, max_size=n)), np.float64)
        if draw(st.booleans()):
            y = y.astype(np.int64)
        named = {"X": X, "y": y}
        if draw(st.integers(0, 3)) == 0 and X.ndim:
            named["X_test"], named["y_test"] = X[:2], y[:2]
        if draw(st.integers(0, 3)) == 0:
            named.pop(draw(st.sampled_from(sorted(named))))
    else:
        named = draw(st.dictionaries(st.sampled_from(ARRAY_NAMES), arrays(), max_size=4))
    buf = io.BytesIO()
    np.savez(buf, **named)
    raw = buf.getvalue()
    damage = draw(st.sampled_from(["none"] * 5 + ["truncate", "flip"]))
    if damage == "truncate":
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif damage == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    return raw


csv_cells = st.one_of(st.sampled_from(["0", "1", "2", "-3", "0.5", "7"]), st.floats(-1e3, 1e3).map(repr),
                      st.sampled_from(["1e308", "1e999", "-1e39", "nan", "inf", "-inf", "", " ", "x", "3.0", "1_0",
                                       "０", "\"1\"", "9" * 40, "0x1", " 2 "]), text)


@st.composite
def csv_files(draw) -> bytes:
    """A CSV text: a header (usually with y), rows of random cells and lengths; sometimes not UTF-8."""
    header = draw(st.one_of(st.just(["a", "b", "y"]), st.just(["y", "x"]),
                            st.lists(st.one_of(st.sampled_from(["y", "a", "b", "y ", "Y"]), text), max_size=4)))
    width = len(header)
    plain = st.sampled_from(["0", "1", "2", "-3", "0.5", "7"])
    row = st.one_of(st.lists(plain, min_size=width, max_size=width),
                    st.lists(csv_cells, min_size=max(0, width - 1), max_size=width + 1))
    rows = draw(st.lists(row, max_size=6))
    import csv
    out = io.StringIO()
    w = csv.writer(out)
    if header or draw(st.booleans()):
        w.writerow(header)
    w.writerows(rows)
    raw = out.getvalue().encode("utf-8")
    if draw(st.integers(0, 7)) == 0:
        raw = b"\xff\xfe" + raw
    return raw
