"""The bpresearch command: seed-example, sweep, list, report.

Bad input (an experiment file, a data file, an unknown experiment) prints one line on
stderr naming the file, the key and the problem, and exits with code 2. Ctrl-C during a
sweep exits with 130 after saying how to resume; a closed pipe (``| head``) exits quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_STORE = 3   # the tracking store failed; trained results are in the spool (see `bpresearch sync`)
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141     # 128 + SIGPIPE, as a shell reports a command whose reader went away
DESCRIPTION = ("Train grids of learning rates × batch sizes × seeds with JAX, log every loss "
               "curve to MLflow, and write convergence reports.")


def _one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``, ``\\x00``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"bpresearch: error: {_one_line(message)}", file=sys.stderr)
    return code


def _connect(tracking_uri):
    """(uri, Store) once the store answers; transient errors are retried for a bounded time."""
    from bpresearch.store import retry
    from bpresearch.store.tracking import open_store
    from bpresearch.store.uri import resolve_uri

    uri = resolve_uri(tracking_uri)
    # Against a server: one try per request and a bounded wait; bpresearch retries transient
    # errors itself for a bounded time (retry.py) instead of MLflow's ≈ 4 minutes per request.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return uri, retry.call(lambda: open_store(uri), f"connecting to the MLflow store {uri}", retry.is_transient)


def cmd_sync(args) -> int:
    from bpresearch.run.runner import sync
    from bpresearch.store.retry import StoreFailure

    try:
        uri, tracker = _connect(args.tracking_uri)
        n = sync(tracker)
    except StoreFailure as e:
        return _fail(str(e), EXIT_STORE)
    print(f"{n} saved run(s) written to {uri}." if n else f"Nothing saved in the spool for {uri}.")
    return 0


def cmd_seed_example(args) -> int:
    from bpresearch.core.seed import format_seed_example, seed_example

    if args.steps < 1:
        return _fail("--steps: must be ≥ 1")
    result = seed_example(x=args.x, y=args.y, z=args.z, target=args.target, lr=args.lr, steps=args.steps)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_seed_example(result))
    return 0


def _where_next(uri: str, experiment_ids: list[str]) -> str:
    """Where to look next: the first experiment's run table in the UI (from the ids the sweep
    already has: no second connection to the store), then the reports."""
    from bpresearch.store.tracking import DEFAULT_UI, runs_url
    from bpresearch.store.uri import is_default, sqlite_path

    if sqlite_path(uri) is None:
        return "Next: write the convergence reports with `make report` (reports/index.html)."
    ui = "make ui" if is_default(uri) else \
        f"MLFLOW_TRACKING_URI={uri} make ui"
    first = runs_url(DEFAULT_UI, experiment_ids[0]) if experiment_ids else \
        f"{DEFAULT_UI}/#/experiments?workflowType=machine_learning"
    return (f"Next: the loss curves in the MLflow UI: `{ui}`, then open {first}\n"
            f"      the convergence reports: `make report` (reports/index.html).")


def cmd_sweep(args) -> int:
    from bpresearch.store.sqlstore import NewerSchema
    from bpresearch.store.tracking import check_not_newer
    from bpresearch.store.uri import resolve_uri

    try:   # before the experiment files load JAX: a store a later MLflow upgraded fails at once
        check_not_newer(args.tracking_uri)
    except NewerSchema as e:
        return _fail(f"connecting to the MLflow store {resolve_uri(args.tracking_uri)}: {e}", EXIT_STORE)
    from bpresearch.spec import experiment as expmod
    from bpresearch.spec.config import ExperimentError

    if args.executor != "ray" and (args.address or args.actors):
        return _fail("--address and --actors go with --executor ray")
    if args.executor != "ray" and args.ray_pip:
        return _fail("--ray-pip goes with --executor ray")
    if args.actors is not None and args.actors < 1:
        return _fail(f"--actors: must be ≥ 1, not {args.actors}")
    # Validate every file before anything trains or is logged.
    exps = []
    for f in args.files:
        try:
            exps.append((expmod.load(f, args.set), Path(f).read_text()))
        except ExperimentError as e:
            return _fail(str(e))
    if args.executor == "ray" and (refused := _user_code_on_ray(exps)):
        return _fail(refused)
    if args.dry_run:
        from bpresearch.run.runner import dry_run

        dry_run([exp for exp, _ in exps], args.tracking_uri)
        return 0

    from bpresearch.run.sharding import prepare_backend
    prepare_backend()  # before JAX starts its backend
    from bpresearch.run.executors import ExecutorFailure, MissingRay, make_executor
    from bpresearch.run.runner import run_experiment
    from bpresearch.run.summary import table
    from bpresearch.store.retry import StoreFailure

    try:  # Ray starts before the driver's JAX touches a device
        executor = make_executor(args.executor, args.address, args.actors, args.ray_pip)
    except MissingRay as e:
        return _fail(str(e))
    except Exception as e:  # noqa: BLE001 - Ray could not start or reach its cluster: one line, no traceback
        where = f" at {args.address}" if args.address else ""
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return _fail(f"--executor ray: could not start or reach Ray{where}: {first}", 1)
    if args.executor == "ray":
        print(f"Ray: {len(executor.actors)} actors", file=sys.stderr)
    summaries = []
    try:
        uri, tracker = _connect(args.tracking_uri)
        print(f"MLflow store: {uri}", file=sys.stderr)
        for exp, text in exps:
            summaries.append(run_experiment(exp, tracker, text, args.set, executor=executor))
    except StoreFailure as e:
        executor.close()
        return _fail(str(e), EXIT_STORE)
    except ExecutorFailure as e:
        executor.close()
        return _fail(str(e), 1)
    except ExperimentError as e:   # found only once the store is read (a refine target the runs lack)
        executor.close()
        return _fail(str(e))
    except KeyboardInterrupt:
        name = exps[len(summaries)][0].name if len(summaries) < len(exps) else ""
        print(f"\ninterrupted: {name}: the runs logged so far are in the store (FINISHED, complete)"
              f"{'' if len(summaries) + 1 >= len(exps) else ', and the experiments after it are still to train'}.\n"
              f"Resume (finished runs are skipped): {_command_line()}", file=sys.stderr)
        return EXIT_INTERRUPTED   # the executor is left to the process's exit (a Ray shutdown takes seconds)
    except BaseException:
        executor.close()
        raise
    executor.close()
    print()
    print("\n".join(table(summaries)))
    print(_where_next(uri, [s.experiment_id for s in summaries if s.experiment_id]))
    return 0


def _user_code_on_ray(exps) -> str | None:
    """Why ``--executor ray`` cannot sweep one of ``exps``: its own model or loss file."""
    for exp, _ in exps:
        if exp.sources:
            return (f"{exp.path}: names its own code ({', '.join(sorted(exp.sources))}), which Ray's workers "
                    "cannot load yet: sweep it with --executor local")
    return None


def _command_line() -> str:
    """The command as typed (``bpresearch`` and its arguments), quoted for a shell."""
    prog = sys.argv[0] if sys.argv and sys.argv[0].endswith("bpresearch") else "bpresearch"
    return shlex.join([prog, *sys.argv[1:]])


def cmd_list(args) -> int:
    from bpresearch.store.tracking import open_store
    from bpresearch.store.uri import resolve_uri, sqlite_path

    uri = resolve_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        print(f"No store yet at {uri}: run `make sweep` first.")
        return 0
    rows = open_store(uri).experiments()
    if not rows:
        print(f"No experiments in {uri}: run `make sweep` first.")
        return 0
    if args.links is not None:   # `make ui`: where to click, one experiment a line
        from bpresearch.store.tracking import ui_links

        links = dict(ui_links(uri, args.links))
        print("Open in a browser (the run table of each experiment; in the UI, 'Model training' mode):")
        for name, _, runs, _ in rows:
            print(f"  {name:<24} {links.get(name, '')}")
        return 0
    print(f"{'experiment':<28} {'runs':>6} {'sweeps':>7}  description")
    for name, desc, runs, sweeps in rows:
        d = desc.replace("\n", " ")
        print(f"{name:<28} {runs:>6} {sweeps:>7}  {d[:70] + ('…' if len(d) > 70 else '')}")
    return 0


def cmd_report(args) -> int:
    try:
        from analysis.report import RunSide
        from analysis.report import main as report_main
    except ImportError as e:  # pragma: no cover - analysis ships with the project
        return _fail(f"report: the analysis package is not available ({e})")
    from bpresearch.core.seed import seed_example

    def loss_surface(config):  # JAX is loaded only for a report that draws J(w)
        from bpresearch.spec.landscape import loss_surface

        return loss_surface(config)

    # Analysis imports no JAX: what the seed's pictures need from the run side is handed in.
    return report_main(args, RunSide(seed_example, loss_surface))


def parser() -> argparse.ArgumentParser:
    from importlib import metadata

    from bpresearch.store.uri import DEFAULT_URI

    p = argparse.ArgumentParser(prog="bpresearch", description=DESCRIPTION,
                                epilog="Start with: make sweep, then make ui and make report. "
                                       "bpresearch COMMAND --help describes each command.")
    try:
        version = metadata.version("bpresearch")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        version = "unknown"
    p.add_argument("--version", action="version", version=f"bpresearch {version}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("seed-example", help="the seed's worked example f = (x+y)·z, forward and backward")
    s.add_argument("--lr", type=float, default=0.1, help="learning rate η (default 0.1, the post's)")
    s.add_argument("--target", type=float, default=-10.0, help="Target of the loss ½(f − Target)² (default −10)")
    s.add_argument("--steps", type=int, default=1, help="keep updating N times and print the loss after each")
    s.add_argument("--x", type=float, default=-2.0)
    s.add_argument("--y", type=float, default=5.0)
    s.add_argument("--z", type=float, default=-4.0)
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(fn=cmd_seed_example)

    s = sub.add_parser("sweep", help="train every configuration of experiment files, log them to MLflow")
    s.add_argument("files", nargs="+", metavar="FILE", help="experiment files (experiments/*.toml)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a field, e.g. --set train.steps=200 (repeatable)")
    s.add_argument("--tracking-uri", help=f"MLflow store (default: $MLFLOW_TRACKING_URI or {DEFAULT_URI})")
    s.add_argument("--dry-run", action="store_true", help="print the grid and its groups; train nothing")
    s.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the compiled groups train: this process (default) or Ray actors (extra [ray])")
    s.add_argument("--address", help="--executor ray: a running Ray cluster (default: start a local one)")
    s.add_argument("--actors", type=int, help="--executor ray: how many actors (default: one per GPU, else per CPU)")
    s.add_argument("--ray-pip", action="store_true",
                   help="--executor ray: workers pip-install this driver's versions of jax, optax, numpy")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("sync", help="write results saved in the spool (after a store failure) to the store")
    s.add_argument("--tracking-uri")
    s.set_defaults(fn=cmd_sync)

    s = sub.add_parser("list", help="experiments in the store and their run counts")
    s.add_argument("--tracking-uri")
    s.add_argument("--links", nargs="?", const="http://127.0.0.1:5000", metavar="UI_URL",
                   help="print each experiment's link in the MLflow UI at UI_URL instead (default http://127.0.0.1:5000)")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("report", help="write convergence reports (HTML + Markdown) from MLflow")
    s.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="experiment names (default: all)")
    s.add_argument("--tracking-uri")
    s.add_argument("--out", default="reports", help="output folder (default reports/)")
    s.add_argument("--variant", default=None, metavar="VARIANT",
                   help="one variant of the experiment: 'base', its folder name, or its overrides such as "
                        "train.steps=300 (default: every variant, each on its own page)")
    s.add_argument("--targets", default=None, metavar="LOSSES",
                   help="loss targets such as 0.3,0.05 (default: those the runs were swept with); one the sweep "
                        "was not given is answered from the logged curves, nothing is retrained")
    s.add_argument("--ui-url", default=None, metavar="UI_URL",
                   help="the MLflow UI's address (e.g. http://127.0.0.1:5000, what `make ui` serves): the report's "
                        "title and best-η cells link to the experiment's view and to each cell's runs (default: no links)")
    s.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()   # a closed pipe shows here, not at exit
    except BrokenPipeError:
        # `bpresearch ... | head`: the reader has what it wanted. Point stdout at devnull so
        # that the interpreter's last flush does not fail again (Python's own advice).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED and argv is None:
        # A command-line Ctrl-C: the store is consistent; leave now rather than wait for a
        # compiled call still running on a worker thread.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
