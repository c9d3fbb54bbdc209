"""Datasets as plain numpy arrays, deterministic given a seed.

Three built-in sources, each the simplest setting for one question of the seed:
a teacher neuron (one neuron learning another, docs/seed.md §1-3), the bundled
scikit-learn digits (a multi-layer network, §7), and the seed graph's single
sample (§4-5). User files (.npz or .csv) are validated up front so that a bad
file fails with one line naming the file and the problem, never a traceback.
"""

import csv
import hashlib
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from bpresearch.core.activations import ACTIVATIONS

_INT32 = np.iinfo(np.int32)
_NPZ_KEYS = ("X", "y", "X_test", "y_test")  # the arrays an .npz dataset may hold


class DataError(ValueError):
    """Bad user data; the message names the file and the problem, one line."""


@dataclass(frozen=True)
class Dataset:
    """Train and optional test arrays: numpy on the host, or device arrays for training.

    X_train: float32 (N, d). y_train: float32 (N,) regression targets or int32 (N,)
    class labels. X_test, y_test: the same for M test samples, or both None.
    name: a short description, e.g. "digits", "teacher(d=8,noise=0.1)", "file:linear.npz".

    A JAX pytree whose leaves are the four arrays (``name`` is static), so a device copy
    (``workload.to_device``) is passed straight into a compiled program.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""


jax.tree_util.register_dataclass(Dataset, data_fields=["X_train", "y_train", "X_test", "y_test"],
                                 meta_fields=["name"])


def load(base: str | Path, *, source: str, path: str | None, target_column: str, test_fraction: float,
         split_seed: int, n_train: int, n_test: int, n_features: int, noise: float,
         teacher_activation: str, teacher_bias: bool, seed: int, target: float) -> Dataset:
    """The data set ``source`` names, built from the settings that apply to it.

    The keywords are the ``[data]`` settings (a resolved section unpacks into them); each
    source reads only its own and the rest are ignored.

    Args:
        base: the folder a relative ``path`` is relative to (the experiment file's).
        source: ``digits`` (``test_fraction``, ``split_seed``), ``teacher`` (``n_train``,
            ``n_test``, ``n_features``, ``noise``, ``teacher_activation``, ``teacher_bias``,
            ``seed``), ``seed`` (``target``) or ``file`` (``path``, ``target_column``,
            ``test_fraction``, ``split_seed``).
    Returns:
        The ``Dataset``.
    Raises:
        DataError: a missing or bad user file, in one line.
    """
    if source == "digits":
        return digits(test_fraction, split_seed)
    if source == "teacher":
        return teacher(n_train, n_test, n_features, noise, teacher_activation, teacher_bias, seed)
    if source == "seed":
        return seed_point(target)
    if path is None:
        raise DataError('required when source = "file"')
    return load_file(Path(base) / path, target_column, test_fraction, split_seed)


# --- built-in datasets --------------------------------------------------------------


def teacher(n_train=256, n_test=0, n_features=8, noise=0.0, activation="identity", bias=False, seed=0):
    """Samples labelled by a hidden "teacher" neuron: y = F(X·w* + b*) + noise·ε.

    X ~ N(0, I) and w* ~ N(0, I/d), so X·w* has unit variance whatever d is;
    b* ~ N(0, 1) when ``bias``, else 0; ε ~ N(0, 1).

    The teacher, the inputs and the noise come from three independent streams of
    ``np.random.default_rng(seed)``, so the train rows do not change with
    ``n_test`` and the inputs do not change with ``noise``.

    Args:
        n_train: number of training samples (>= 1).
        n_test: number of test samples (0: no test split).
        n_features: input dimension d (>= 1).
        noise: standard deviation of the label noise (>= 0).
        activation: F, one of "identity", "sigmoid", "tanh", "relu".
        bias: whether the teacher has a bias b*.
        seed: the random seed.

    Returns:
        A Dataset with float32 X (N, d) and float32 y (N,).
    """
    if n_train < 1 or n_test < 0 or n_features < 1:
        raise ValueError(f"teacher needs n_train >= 1, n_test >= 0, n_features >= 1; got {n_train}, {n_test}, {n_features}")
    if noise < 0:
        raise ValueError(f"teacher noise must be >= 0, got {noise}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")

    teacher_rng, x_rng, noise_rng = np.random.default_rng(seed).spawn(3)
    w = teacher_rng.normal(size=n_features) / np.sqrt(n_features)
    b = teacher_rng.normal() if bias else 0.0

    def draw(n):
        # Rows are drawn train-first from each stream, so train never depends on n_test.
        X = x_rng.normal(size=(n, n_features))
        y = ACTIVATIONS[activation].numpy(X @ w + b) + noise * noise_rng.normal(size=n)
        return X.astype(np.float32), y.astype(np.float32)

    X_train, y_train = draw(n_train)
    X_test, y_test = draw(n_test) if n_test else (None, None)

    name = f"teacher(d={n_features},noise={noise:g}"
    name += f",activation={activation}" if activation != "identity" else ""
    name += ",bias=True)" if bias else ")"
    return Dataset(X_train, y_train, X_test, y_test, name)


def digits(test_fraction=0.2, split_seed=0):
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes), standardized.

    The train/test split is stratified by class and fixed by ``split_seed``; the
    features are standardized with the train mean and std only, so nothing about
    the test set leaks into training (constant features keep std 1).

    The finished arrays are cached (``cache.py``), keyed by scikit-learn's version and
    the two arguments: importing scikit-learn costs more than a second, so only the
    first load of a split pays it. A cached split is the computed one, bit for bit.

    Args:
        test_fraction: share of samples held out for test, in [0, 1); 0 means no test set.
        split_seed: ``random_state`` of the split.

    Returns:
        A Dataset with float32 X (N, 64) and int32 labels y (N,) in 0..9.
    """
    from importlib import metadata

    from bpresearch.core import cache

    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    name = f"digits-sklearn{metadata.version('scikit-learn')}-test{test_fraction!r}-seed{split_seed}.npz"
    arrays = cache.load_arrays(name)
    if arrays is None or set(arrays) != {"X_train", "y_train", "X_test", "y_test"}:
        arrays = _digits_split(test_fraction, split_seed)
        cache.save_arrays(name, arrays)
    has_test = arrays["X_test"].shape[0] > 0
    return Dataset(arrays["X_train"], arrays["y_train"], arrays["X_test"] if has_test else None,
                   arrays["y_test"] if has_test else None, "digits")


def _digits_split(test_fraction: float, split_seed: int) -> dict[str, np.ndarray]:
    """``digits``' arrays computed with scikit-learn (an empty test set when ``test_fraction`` is 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    if test_fraction > 0:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_fraction, stratify=y, random_state=split_seed
        )
    else:
        X_train, y_train, X_test, y_test = X, y, X[:0], y[:0]

    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0  # e.g. corner pixels that are always blank

    def scale(A):
        return ((A - mean) / std).astype(np.float32)

    return {"X_train": scale(X_train), "y_train": y_train.astype(np.int32),
            "X_test": scale(X_test), "y_test": y_test.astype(np.int32)}


def seed_point(target=-10.0):
    """The seed graph's single sample (docs/seed.md §5): no input features, one target.

    Args:
        target: the target for f = (x + y)·z.

    Returns:
        A Dataset with X_train of shape (1, 0), y_train = [target], no test set.
    """
    return Dataset(
        np.zeros((1, 0), np.float32), np.array([target], np.float32), None, None, f"seed_point(target={target:g})"
    )


# --- user files ---------------------------------------------------------------------


def _fail(name, problem):
    """A DataError whose one-line message names the file and the problem."""
    return DataError(f"{name}: {' '.join(str(problem).split())}")


def file_sha256(path):
    """Hex SHA-256 of a file's bytes (for config hashes).

    Args:
        path: the file.

    Returns:
        The 64-character hex digest.

    Raises:
        DataError: when the file cannot be read.
    """
    name = os.fspath(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise _fail(name, "no such file") from None
    except OSError as e:
        raise _fail(name, f"cannot read ({e.strerror or e})") from None
    return digest.hexdigest()


def load_file(path, target_column="y", test_fraction=0.0, split_seed=0):
    """Load a user dataset from .npz or .csv, validated.

    .npz: arrays X (2-D, or 1-D for one feature) and y (1-D), optionally X_test and
    y_test (both or neither); other arrays are ignored.
    .csv: a header row; ``target_column`` is y and every other column is a feature.
    A CSV target whose every field is an integer literal ("3", not "3.0") is read
    as class labels.

    Args:
        path: the file (.npz or .csv).
        target_column: the CSV column holding y (unused for .npz).
        test_fraction: share of rows split off as a test set by a shuffle seeded
            with ``split_seed``, in [0, 1); only for files without their own X_test.
        split_seed: seed of that shuffle.

    Returns:
        A Dataset: X float32 (N, d); y int32 for integer dtypes, else float32;
        name "file:<file name>".

    Raises:
        DataError: one line "<path>: <problem>" for any bad file.
    """
    name = os.fspath(path)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    p = Path(path)
    if not p.exists():
        raise _fail(name, "no such file")
    if not p.is_file():
        raise _fail(name, "not a regular file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(name, p)
    elif suffix == ".csv":
        arrays = _read_csv(name, p, target_column)
    else:
        raise _fail(name, f"unsupported extension {suffix or '(none)'!r} (expected .npz or .csv)")

    X, y = _check_xy(name, arrays["X"], arrays["y"], "X", "y")
    if ("X_test" in arrays) != ("y_test" in arrays):
        given, missing = ("X_test", "y_test") if "X_test" in arrays else ("y_test", "X_test")
        raise _fail(name, f"{given} given without {missing}")
    if "X_test" in arrays:
        if test_fraction > 0:
            raise _fail(name, f"the file has its own X_test, so test_fraction must be 0 (got {test_fraction:g})")
        X_test, y_test = _check_xy(name, arrays["X_test"], arrays["y_test"], "X_test", "y_test")
        if X_test.shape[1] != X.shape[1]:
            raise _fail(name, f"X_test has {X_test.shape[1]} columns but X has {X.shape[1]}")
        if y_test.dtype != y.dtype:
            kinds = {np.dtype(np.int32): "integer labels", np.dtype(np.float32): "float targets"}
            raise _fail(name, f"y has {kinds[y.dtype]} but y_test has {kinds[y_test.dtype]}")
    elif test_fraction > 0:
        X, y, X_test, y_test = _split(name, X, y, test_fraction, split_seed)
    else:
        X_test = y_test = None
    return Dataset(X, y, X_test, y_test, f"file:{p.name}")


def _read_npz(name, p):
    """The arrays of an .npz archive, by name."""
    # np.load reports a corrupt archive through many exception types; to the user
    # they all mean the same thing.
    corrupt = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)
    try:
        npz = np.load(p, allow_pickle=False)
    except corrupt:
        raise _fail(name, "not a valid .npz archive") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a lone .npy array renamed .npz
        raise _fail(name, "not a valid .npz archive (it holds a single .npy array)")
    arrays = {}
    with npz:
        for key in (k for k in npz.files if k in _NPZ_KEYS):  # other arrays are ignored unread
            try:
                arrays[key] = npz[key]
            except corrupt:  # a damaged member, or Python objects (allow_pickle=False)
                raise _fail(name, f"cannot read array {key!r} (damaged, or not a plain numeric array)") from None
        found = ", ".join(sorted(npz.files)) or "none"
    for key in ("X", "y"):
        if key not in arrays:
            raise _fail(name, f"missing array {key!r} (found: {found})")
    return arrays


def _read_csv(name, p, target_column):
    """X and y from a CSV file with a header row, as numpy arrays."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # -sig: drop a spreadsheet's BOM
            rows = [row for row in csv.reader(f) if any(field.strip() for field in row)]
    except UnicodeDecodeError:
        raise _fail(name, "not a UTF-8 text file") from None
    except csv.Error as e:
        raise _fail(name, f"not a valid CSV file ({e})") from None
    if not rows:
        raise _fail(name, "empty file (no header row)")

    header = [h.strip() for h in rows[0]]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise _fail(name, f"duplicate column {duplicates[0]!r}")
    if target_column not in header:
        raise _fail(name, f"no column {target_column!r} (columns: {', '.join(header)})")
    data = rows[1:]
    if not data:
        raise _fail(name, "no data rows")

    values = np.empty((len(data), len(header)), np.float64)
    for r, row in enumerate(data, start=1):  # rows are counted from 1 after the header
        if len(row) != len(header):
            raise _fail(name, f"row {r} has {len(row)} fields but the header has {len(header)}")
        for c, field in enumerate(row):
            try:
                values[r - 1, c] = float(field)
            except ValueError:
                problem = "empty value" if not field.strip() else f"non-numeric value {field.strip()!r}"
                raise _fail(name, f"column {header[c]!r}, row {r}: {problem}") from None

    t = header.index(target_column)
    y = values[:, t]
    if all(_is_int_literal(row[t]) for row in data):
        y = y.astype(np.int64)  # class labels; _check_xy narrows to int32
    return {"X": np.delete(values, t, axis=1), "y": y}


def _is_int_literal(field):
    try:
        int(field)
    except ValueError:
        return False
    return True


def _check_xy(name, X, y, x_key, y_key):
    """Validate one (X, y) pair and convert it to float32 X (N, d) and int32/float32 y (N,)."""
    for key, a in ((x_key, X), (y_key, y)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise _fail(name, f"{key} has non-numeric dtype {a.dtype}")
    if X.ndim == 1:
        X = X[:, None]  # a 1-D X is one feature
    if X.ndim != 2:
        raise _fail(name, f"{x_key} must be 1-D or 2-D, got shape {X.shape}")
    if y.ndim != 1:
        raise _fail(name, f"{y_key} must be 1-D, got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise _fail(name, f"{x_key} has {X.shape[0]} rows but {y_key} has {y.shape[0]}")
    if X.shape[0] == 0:
        raise _fail(name, f"empty data ({x_key} has 0 rows)")
    if X.shape[1] == 0:
        raise _fail(name, f"{x_key} has no feature columns")

    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        if y.size and (y.min() < _INT32.min or y.max() > _INT32.max):
            raise _fail(name, f"{y_key} has integer values outside the int32 range")
        y = y.astype(np.int32)
    else:
        if not np.all(np.isfinite(y)):
            raise _fail(name, f"{y_key} contains NaN or infinity")
        with np.errstate(over="ignore"):  # overflow is reported below, by name
            y = y.astype(np.float32)
    if np.issubdtype(X.dtype, np.floating) and not np.all(np.isfinite(X)):
        raise _fail(name, f"{x_key} contains NaN or infinity")
    with np.errstate(over="ignore"):
        X = X.astype(np.float32)
    # Finite float64 values beyond ~3.4e38 become inf in float32.
    for key, a in ((x_key, X), (y_key, y)):
        if a.dtype == np.float32 and not np.all(np.isfinite(a)):
            raise _fail(name, f"{key} has values too large for float32")
    return X, y


def _split(name, X, y, test_fraction, split_seed):
    """Shuffle with ``split_seed`` and hold out round(test_fraction·N) rows for test."""
    n = X.shape[0]
    n_test = int(round(test_fraction * n))
    if not 0 < n_test < n:
        raise _fail(name, f"test_fraction {test_fraction:g} of {n} rows leaves an empty train or test set")
    perm = np.random.default_rng(split_seed).permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    return X[train], y[train], X[test], y[test]
