"""``python -m bench.tpe URI SEED REFERENCE.json RESULT.json [--set …]``: ``time_to_answer.optuna_tpe`` as
a process of its own, so that it is timed from its start as the harness's ``bpresearch sweep`` is
(``time_to_answer.optuna_tpe_process``). Writes ``optuna_tpe``'s result (JSON) to RESULT.json."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    uri, seed, reference, result, *extra = argv
    from . import time_to_answer

    with open(reference) as f:
        ref = json.load(f)
    out = time_to_answer.optuna_tpe(ref, extra, int(seed), uri)
    with open(result, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
