"""A misspelt "full" in ``[sweep] batch_size`` is named, with the word it was likely meant to be."""

import pytest

from bpresearch.cli import main
from bpresearch.spec import checks
from bpresearch.spec.checks import Invalid

FILE = """name = "t"
[data]
source = "teacher"
n_train = 32
[train]
steps = 10
[sweep]
learning_rate = [0.1]
batch_size = BATCH
"""


@pytest.mark.parametrize("typo", ["ful", "Full", "fulll", "fll"])
def test_a_typo_of_full_suggests_full(typo):
    with pytest.raises(Invalid) as e:
        checks.batch_sizes([4, typo])
    assert str(e.value) == f"must be an integer or \"full\", got {typo!r} (did you mean 'full'?)"


@pytest.mark.parametrize("word", ["half", "all", "batch"])
def test_an_unrelated_word_gets_no_suggestion(word):
    with pytest.raises(Invalid) as e:
        checks.batch_sizes([word])
    assert "did you mean" not in str(e.value) and repr(word) in str(e.value)


def test_numbers_and_full_still_pass():
    assert checks.batch_sizes([1, "full", 8]) == [1, "full", 8]
    with pytest.raises(Invalid, match="≥ 1"):
        checks.batch_sizes([0])


def test_the_sweep_says_it_in_one_line(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(FILE.replace("BATCH", '["ful"]'))
    db = tmp_path / "mlflow.db"
    assert main(["sweep", str(path), "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "[sweep] batch_size" in err and "(did you mean 'full'?)" in err, err
    assert not db.exists()
