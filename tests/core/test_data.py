"""Datasets: determinism, shapes and dtypes, and one-line errors for bad user files."""

import hashlib

import numpy as np
import pytest

from bpresearch.core.data import (
    DataError,
    Dataset,
    digits,
    file_sha256,
    load_file,
    seed_point,
    teacher,
)

# --- built-in datasets ------------------------------------------------------------------


def _assert_bitwise_equal(a: Dataset, b: Dataset):
    assert a.name == b.name
    arrays = lambda d: (d.X_train, d.y_train, d.X_test, d.y_test)  # noqa: E731
    for x, y in zip(arrays(a), arrays(b)):
        if x is None:
            assert y is None
        else:
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_teacher_is_deterministic_with_shapes_and_dtypes(activation):
    kwargs = dict(n_train=64, n_test=16, n_features=5, noise=0.1, activation=activation, bias=True, seed=3)
    d = teacher(**kwargs)
    _assert_bitwise_equal(d, teacher(**kwargs))
    assert d.X_train.shape == (64, 5) and d.X_train.dtype == np.float32
    assert d.y_train.shape == (64,) and d.y_train.dtype == np.float32
    assert d.X_test.shape == (16, 5) and d.y_test.shape == (16,)
    assert not np.array_equal(d.X_train, teacher(**{**kwargs, "seed": 4}).X_train)


def test_teacher_without_noise_is_an_exact_linear_neuron():
    d = teacher(n_train=200, n_features=4, noise=0.0, seed=1)
    assert d.X_test is None and d.y_test is None
    assert d.name == "teacher(d=4,noise=0)"
    w, *_ = np.linalg.lstsq(d.X_train.astype(np.float64), d.y_train.astype(np.float64), rcond=None)
    np.testing.assert_allclose(d.X_train @ w, d.y_train, atol=1e-5)


def test_teacher_train_rows_do_not_depend_on_n_test_or_noise():
    base = teacher(n_train=32, n_test=0, seed=7)
    np.testing.assert_array_equal(base.X_train, teacher(n_train=32, n_test=50, seed=7).X_train)
    np.testing.assert_array_equal(base.y_train, teacher(n_train=32, n_test=50, seed=7).y_train)
    np.testing.assert_array_equal(base.X_train, teacher(n_train=32, noise=0.5, seed=7).X_train)


def test_teacher_activation_ranges_and_bad_arguments():
    assert teacher(activation="relu").y_train.min() >= 0
    s = teacher(activation="sigmoid").y_train
    assert 0 < s.min() and s.max() < 1
    with pytest.raises(ValueError, match="activation"):
        teacher(activation="softplus")
    with pytest.raises(ValueError):
        teacher(n_train=0)


def test_digits_split_is_deterministic_stratified_and_standardized():
    d = digits(test_fraction=0.2, split_seed=0)
    _assert_bitwise_equal(d, digits(test_fraction=0.2, split_seed=0))
    assert d.name == "digits"
    assert len(d.y_train) + len(d.y_test) == 1797
    assert d.X_train.shape[1] == d.X_test.shape[1] == 64
    assert d.X_train.dtype == d.X_test.dtype == np.float32
    assert d.y_train.dtype == d.y_test.dtype == np.int32
    assert len(d.y_test) == pytest.approx(0.2 * 1797, abs=1)

    # Stratified: each class has its share of the test set, to within one sample.
    all_labels = np.concatenate([d.y_train, d.y_test])
    for c in range(10):
        expected = np.mean(all_labels == c) * len(d.y_test)
        assert abs(np.sum(d.y_test == c) - expected) <= 1

    mean, std = d.X_train.mean(axis=0), d.X_train.std(axis=0)
    varying = std > 0
    assert varying.sum() > 50
    np.testing.assert_allclose(mean, 0, atol=1e-5)
    np.testing.assert_allclose(std[varying], 1, atol=1e-4)

    other = digits(test_fraction=0.2, split_seed=1)
    assert not np.array_equal(d.y_test, other.y_test)


def test_digits_from_the_cache_are_the_computed_split_and_need_no_sklearn(tmp_path, monkeypatch):
    """The cached split is scikit-learn's, bit for bit; a later process loads it without
    importing scikit-learn (its import is the slow part); a damaged file is rebuilt."""
    import subprocess
    import sys

    from bpresearch.core import data

    monkeypatch.setenv("BPRESEARCH_CACHE", str(tmp_path))
    for fraction, seed in ((0.2, 0), (0.3, 4), (0.0, 0)):
        arrays = data._digits_split(fraction, seed)
        computed = Dataset(arrays["X_train"], arrays["y_train"], arrays["X_test"] if fraction else None,
                           arrays["y_test"] if fraction else None, "digits")
        _assert_bitwise_equal(digits(fraction, seed), computed)   # the first load computes and saves
        _assert_bitwise_equal(digits(fraction, seed), computed)   # the second reads the cache
    files = sorted((tmp_path / "data").glob("digits-*.npz"))
    assert len(files) == 3
    code = ("import sys; from bpresearch.core.data import digits; d = digits(0.3, 4); "
            "print(d.X_train.shape[0], 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "BPRESEARCH_CACHE": str(tmp_path)})
    assert out.stdout.split() == ["1257", "False"], out.stderr
    for f in files:
        f.write_bytes(f.read_bytes()[:100])   # truncated: rebuilt, not trusted
    _assert_bitwise_equal(digits(0.3, 4), Dataset(**{k: v for k, v in zip(
        ("X_train", "y_train", "X_test", "y_test"), data._digits_split(0.3, 4).values())}, name="digits"))


def test_digits_without_test_split():
    d = digits(test_fraction=0.0)
    assert d.X_train.shape == (1797, 64) and d.X_test is None and d.y_test is None
    assert set(np.unique(d.y_train)) == set(range(10))


def test_seed_point():
    d = seed_point(-10.0)
    assert d.X_train.shape == (1, 0) and d.X_train.dtype == np.float32
    assert d.y_train.tolist() == [-10.0] and d.y_train.dtype == np.float32
    assert d.X_test is None and d.y_test is None


# --- good user files ------------------------------------------------------------------------


def test_load_npz_with_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    X, X_test = rng.normal(size=(20, 3)), rng.normal(size=(5, 3))
    path = tmp_path / "linear.npz"
    np.savez(path, X=X, y=X.sum(1), X_test=X_test, y_test=X_test.sum(1), notes=np.arange(2))
    d = load_file(path)
    assert d.name == "file:linear.npz"
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.float32
    np.testing.assert_allclose(d.X_train, X, rtol=1e-6)
    np.testing.assert_allclose(d.y_test, X_test.sum(1), rtol=1e-6)
    assert d.X_test.shape == (5, 3)


def test_load_npz_one_dimensional_x_and_integer_labels(tmp_path):
    path = tmp_path / "labels.npz"
    np.savez(path, X=np.linspace(0, 1, 10), y=np.arange(10) % 3)
    d = load_file(str(path))
    assert d.X_train.shape == (10, 1)
    assert d.y_train.dtype == np.int32 and d.y_train.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert d.X_test is None


def test_load_npz_test_fraction_is_a_seeded_split(tmp_path):
    path = tmp_path / "split.npz"
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.savez(path, X=X, y=X[:, 0])
    a, b = load_file(path, test_fraction=0.25, split_seed=5), load_file(path, test_fraction=0.25, split_seed=5)
    _assert_bitwise_equal(a, b)
    assert a.X_train.shape == (15, 2) and a.X_test.shape == (5, 2)
    # rows stay paired and together cover the file exactly once
    np.testing.assert_array_equal(a.X_train[:, 0], a.y_train)
    rows = np.sort(np.concatenate([a.y_train, a.y_test]))
    np.testing.assert_array_equal(rows, X[:, 0])
    assert not np.array_equal(a.y_test, load_file(path, test_fraction=0.25, split_seed=6).y_test)


def test_load_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("x1, target ,x2\n1.5,0.25,2\n-1,1e-3,  3\n\n0,2,4\n")
    d = load_file(path, target_column="target")
    assert d.name == "file:data.csv"
    np.testing.assert_allclose(d.X_train, [[1.5, 2], [-1, 3], [0, 4]])
    np.testing.assert_allclose(d.y_train, [0.25, 1e-3, 2])
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.float32


def test_load_csv_integer_target_is_labels_and_split(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{-i},{i % 2}\n" for i in range(10)))
    d = load_file(path, test_fraction=0.3, split_seed=0)
    assert d.y_train.dtype == d.y_test.dtype == np.int32
    assert d.X_train.shape == (7, 2) and d.X_test.shape == (3, 2)
    np.testing.assert_array_equal(d.X_train[:, 0] % 2, d.y_train)
    path.write_text("a,y\n1,1.0\n2,0.0\n")
    assert load_file(path).y_train.dtype == np.float32  # "1.0" is a float literal


def test_file_sha256(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,y\n1,2\n")
    assert file_sha256(path) == hashlib.sha256(b"a,y\n1,2\n").hexdigest()
    with pytest.raises(DataError, match="no such file"):
        file_sha256(tmp_path / "missing.npz")


# --- bad user files ----------------------------------------------------------------------------


def _npz(**arrays):
    def write(path):
        np.savez(path, **arrays)

    return write


def _text(content):
    def write(path):
        path.write_text(content)

    return write


def _bytes(content):
    def write(path):
        path.write_bytes(content)

    return write


_X = np.zeros((4, 2))
_Y = np.zeros(4)

BAD_FILES = [
    # (file name, writer or None for no file, load_file kwargs, expected problem)
    ("linear.npz", None, {}, "no such file"),
    ("data.txt", _text("x,y\n1,2\n"), {}, "unsupported extension '.txt'"),
    ("data.npz", _bytes(b"this is not a zip archive"), {}, "not a valid .npz archive"),
    ("data.npz", _bytes(b""), {}, "not a valid .npz archive"),
    ("data.npz", _npz(X=_X, z=_Y), {}, "missing array 'y' (found: X, z)"),
    ("data.npz", _npz(y=_Y), {}, "missing array 'X' (found: y)"),
    ("data.npz", _npz(X=np.zeros((100, 2)), y=np.zeros(99)), {}, "X has 100 rows but y has 99"),
    ("data.npz", _npz(X=np.zeros((0, 2)), y=np.zeros(0)), {}, "empty data"),
    ("data.npz", _npz(X=np.zeros((2, 2, 2)), y=np.zeros(2)), {}, "X must be 1-D or 2-D"),
    ("data.npz", _npz(X=_X, y=np.zeros((4, 2))), {}, "y must be 1-D"),
    ("data.npz", _npz(X=np.array([[1.0, np.nan]]), y=np.zeros(1)), {}, "X contains NaN or infinity"),
    ("data.npz", _npz(X=np.array([[1.0, np.inf]]), y=np.zeros(1)), {}, "X contains NaN or infinity"),
    ("data.npz", _npz(X=_X, y=np.array([0, 1, np.nan, 2])), {}, "y contains NaN or infinity"),
    ("data.npz", _npz(X=np.full((1, 1), 1e300), y=np.zeros(1)), {}, "X has values too large for float32"),
    ("data.npz", _npz(X=np.array([["a", "b"]]), y=np.zeros(1)), {}, "X has non-numeric dtype"),
    ("data.npz", _npz(X=_X, y=_Y, X_test=_X), {}, "X_test given without y_test"),
    ("data.npz", _npz(X=_X, y=_Y, y_test=_Y), {}, "y_test given without X_test"),
    ("data.npz", _npz(X=_X, y=_Y, X_test=np.zeros((4, 3)), y_test=_Y), {}, "X_test has 3 columns but X has 2"),
    ("data.npz", _npz(X=_X, y=_Y, X_test=_X, y_test=np.zeros(3)), {}, "X_test has 4 rows but y_test has 3"),
    ("data.npz", _npz(X=_X, y=np.arange(4), X_test=_X, y_test=_Y), {}, "y has integer labels but y_test has float"),
    ("data.npz", _npz(X=_X, y=_Y, X_test=_X, y_test=_Y), {"test_fraction": 0.2}, "has its own X_test"),
    ("data.npz", _npz(X=_X[:2], y=_Y[:2]), {"test_fraction": 0.1}, "leaves an empty train or test set"),
    ("data.csv", _text("x1,x2,y\n1,2,3\n4,5,6\n7,8,9\n1,2,3\n5,6,7\n1,2,3\n3,abc,3\n"), {}, "column 'x2', row 7: non-numeric value 'abc'"),
    ("data.csv", _text("x1,y\n1,\n"), {}, "column 'y', row 1: empty value"),
    ("data.csv", _text("a,b,c\n1,2,3\n"), {"target_column": "target"}, "no column 'target' (columns: a, b, c)"),
    ("data.csv", _text("x,y\n1,2,3\n"), {}, "row 1 has 3 fields but the header has 2"),
    ("data.csv", _text("x,y\n"), {}, "no data rows"),
    ("data.csv", _text(""), {}, "empty file"),
    ("data.csv", _text("x,y,x\n1,2,3\n"), {}, "duplicate column 'x'"),
    ("data.csv", _text("y\n1\n2\n"), {}, "X has no feature columns"),
    ("data.csv", _text("x,y\nnan,1\n"), {}, "X contains NaN or infinity"),
    ("data.csv", _bytes(b"x,y\n\xff\xfe\x00\x01,2\n"), {}, "not a UTF-8 text file"),
]


@pytest.mark.parametrize(
    "filename,write,kwargs,problem", BAD_FILES, ids=[f"{i:02d}-{case[3][:30]}" for i, case in enumerate(BAD_FILES)]
)
def test_bad_file_gives_one_line_data_error(tmp_path, filename, write, kwargs, problem):
    path = tmp_path / filename
    if write is not None:
        write(path)
    with pytest.raises(DataError) as excinfo:
        load_file(path, **kwargs)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: "), message
    assert problem in message, message
    assert "\n" not in message
    assert excinfo.value.__cause__ is None  # no chained numpy/zipfile/csv traceback


def test_single_npy_array_renamed_npz(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match="not a valid .npz archive"):
        load_file(path)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
