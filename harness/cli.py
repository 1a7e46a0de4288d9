"""The ``sambench`` command line: argument parsing and printing only.

Every user mistake (a bad config value, a bad spec, a sweep folder in use) ends in one
line on stderr and exit code 2; a traceback means a bug in sambench.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from harness import __version__

USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from harness.errors import ConfigError
    from harness.files import WriteError
    from harness.store import SweepFolderError

    user_errors: tuple[type[BaseException], ...] = (ConfigError, SweepFolderError, FileNotFoundError, WriteError)
    try:
        if args.command not in ("run", "resume"):
            return args.handler(args) or 0
        from harness.interrupts import interrupts_as_exceptions, interruption
        from harness.sweep import SweepError, interrupted_message

        from harness.extend import ExtendError

        user_errors += (SweepError, ExtendError)
        try:
            with interrupts_as_exceptions():
                return args.handler(args) or 0
        except BaseException as error:  # noqa: BLE001 - only a signal is handled here
            stop = interruption(error)
            if stop is None:
                raise
            print(f"sambench {args.command}: {interrupted_message(getattr(args, 'sweep_path', None))}",
                  file=sys.stderr, flush=True)
            return stop.exit_code
    except user_errors as error:
        print(f"sambench {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"sambench {args.command}: interrupted", file=sys.stderr)
        return 130


class _CommandParser(argparse.ArgumentParser):
    """With ``trial_keys`` set (``train``), the help ends with every trial key, built only
    when asked for (it imports the registries, which costs a second)."""

    trial_keys = False

    def format_help(self) -> str:
        if not self.trial_keys:
            return super().format_help()
        from harness.config_doc import help_text

        return super().format_help() + "\n" + help_text() + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sambench",
        description="Benchmark the SAM family (SGD, SAM, USAM, Unified SAM) on Ray Tune.",
    )
    parser.add_argument("--version", action="version", version=f"sambench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    train = commands.add_parser("train", help="run one trial without Ray, printing a line per evaluation",
                                description="Run one trial without Ray. With no arguments: the defaults below "
                                            "(digits, an MLP, SAM, a few epochs).")
    train.trial_keys = True
    train.add_argument("config", nargs="?", help="YAML file of trial config keys (optional), or a sweep spec with --trial")
    train.add_argument("--trial", metavar="N|ID", help="run trial N (as `validate` numbers them) or the trial "
                       "with this id (or id prefix) of the sweep spec CONFIG")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    train.set_defaults(handler=_train)

    validate = commands.add_parser("validate", help="expand a sweep spec and print its trials; runs nothing")
    validate.add_argument("spec")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(handler=_validate)

    run = commands.add_parser("run", help="run a sweep spec on Ray Tune (local unless --address)")
    run.add_argument("spec")
    run.add_argument("--results", default="results", help="results root (default: results)")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    run.add_argument("--storage", help="Tune checkpoint storage shared by all nodes (path or URI)")
    run.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--report", action="store_true", help="write the report when the sweep ends")
    run.add_argument("--tracker", action="append", default=[], choices=("tensorboard", "mlflow", "wandb"),
                     help="also send every record to this experiment tracker (repeatable; docs/trackers.md)")
    run.add_argument("--extend", action="store_true",
                     help="add the spec's new trials to a recorded sweep, reusing every unchanged trial")
    run.add_argument("--dashboard", action="store_true", help="start the Ray dashboard on 127.0.0.1 (local Ray only)")
    run.set_defaults(handler=_run)

    resume = commands.add_parser("resume", help="continue an interrupted sweep")
    resume.add_argument("sweep_dir")
    resume.add_argument("--address")
    resume.add_argument("--max-concurrent", type=int)
    resume.add_argument("--rerun-errored", action="store_true", help="also rerun trials that errored")
    resume.add_argument("--report", action="store_true", help="write the report when the sweep ends")
    resume.add_argument("--dashboard", action="store_true", help="start the Ray dashboard on 127.0.0.1 (local Ray only)")
    resume.set_defaults(handler=_resume)

    ls = commands.add_parser("ls", help="status of a sweep: trials done, running, failed; best so far")
    ls.add_argument("sweep_dir")
    ls.add_argument("--trials", action="store_true", help="also list every trial")
    ls.set_defaults(handler=_ls)

    report = commands.add_parser("report", help="figures, tables and report.html from a sweep's Parquet")
    report.add_argument("sweep_dir")
    report.add_argument("--out", help="output folder (default: <sweep_dir>/report)")
    report.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    report.add_argument("--baseline", metavar="KEY=VALUE[,KEY=VALUE]",
                        help="what every configuration is compared with: a filter on trial columns, "
                             "e.g. optimizer=sam or optimizer=unified,lam=0.5 (default: method=SGD)")
    report.set_defaults(handler=_report)

    bench = commands.add_parser("bench", help="the performance suite: ratios against outside references")
    bench.add_argument("--quick", action="store_true", help="small sizes: about 5 minutes on a 2-core CPU")
    bench.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    bench.add_argument("--out", help="output folder (default: benchmarks/perf/results/<machine>)")
    bench.add_argument("--only", action="append", metavar="NAME", help="run only this measurement (repeatable)")
    bench.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    bench.set_defaults(handler=_bench)
    return parser


def _train(args: argparse.Namespace) -> int:
    from harness.config import TrialConfig
    from harness.spec import SpecError, apply_overrides, load_yaml, read_text
    from harness.trial import build_trial

    raw = {}
    if args.config:
        raw = load_yaml(read_text(args.config, "config"), args.config)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise SpecError(args.config, raw, "a YAML mapping of trial config keys")
    if args.trial is not None:
        if not args.config:
            raise SpecError("--trial", args.trial, "a trial of a sweep spec: sambench train SPEC --trial N|ID")
        cfg = _spec_trial(args.config, args.set, args.trial)
    elif "grid" in raw or "name" in raw:
        raise SpecError("--trial", None, f"N or ID: {args.config} is a sweep spec; pick one of its trials "
                        f"(`sambench validate {args.config}` numbers them)")
    else:
        cfg = TrialConfig.from_dict(apply_overrides(raw, args.set))
    trial = build_trial(cfg)
    print(f"trial: {cfg.dataset}/{cfg.model} {cfg.optimizer} lam={cfg.lam} rho={cfg.rho} "
          f"sampler={cfg.sampler} seed={cfg.seed} on {trial.info()['device']}", flush=True)
    for record in trial.records():
        print(_record_line(record), flush=True)
    print(f"status: {trial.status}")
    return 0


def _spec_trial(path: str, overrides: list[str], wanted: str):
    """Trial ``wanted`` of the spec at ``path``: an index as ``validate`` prints it, or a
    trial id (a unique prefix of one will do), as ``ls --trials`` and the Parquet show it."""
    from harness import store
    from harness.spec import SpecError, load_spec

    spec = load_spec(path, overrides)
    ids = [store.config_id(spec.name, cfg) for cfg in spec.trials]
    if wanted.isdigit() and int(wanted) < len(ids):
        index = int(wanted)
    else:
        matches = [i for i, tid in enumerate(ids) if tid.startswith(wanted.lower())] if len(wanted) >= 4 else []
        if len(matches) != 1:
            raise SpecError("--trial", wanted, f"an index 0..{len(ids) - 1} or a trial id of {spec.name} "
                            f"(`sambench validate {path}` numbers them, `sambench ls --trials` shows ids)")
        index = matches[0]
    print(f"sweep {spec.name}: trial {index} of {len(ids)} (id {ids[index]})", flush=True)
    return spec.trials[index]


def _record_line(record: dict) -> str:
    fields = [f"epoch {record['epoch']:g}", f"it {record['iteration']}"]
    for key, fmt in (("train_loss", ".4g"), ("test_acc", ".4f"), ("rel_subopt", ".3e"),
                     ("lam_max", ".4g"), ("trace", ".4g"), ("lr", ".3g"), ("time_train", ".2f")):
        if record.get(key) is not None:
            fields.append(f"{key} {record[key]:{fmt}}")
    return "  ".join(fields)


def _validate(args: argparse.Namespace) -> int:
    from harness.spec import load_spec

    spec = load_spec(args.spec, args.set)
    if spec.trials or spec.tune is None:
        print(spec.table())
    if spec.tune is not None:
        from harness.tuning import describe

        print(describe(spec.tune))
    return 0


def _run(args: argparse.Namespace) -> int:
    from harness.spec import SpecError, load_spec
    from harness.sweep import SweepOptions, extend_sweep, run_sweep
    from harness.trackers import require

    spec = load_spec(args.spec, args.set)
    args.sweep_path = Path(args.results).resolve() / spec.name  # for the line printed on SIGINT/SIGTERM
    trackers = require([*spec.trackers, *args.tracker])  # before any work: a missing extra is one line
    options = SweepOptions(address=args.address, max_concurrent=args.max_concurrent, storage=args.storage,
                           trackers=trackers, dashboard=args.dashboard)
    if spec.tune is not None:
        from harness.tuning import describe, run_tuning

        if args.extend:
            raise SpecError("--extend", True, "a grid spec (a spec with a tune: section continues with resume)")
        print(f"sweep {spec.name}: {len(spec.trials)} grid trials -> {Path(args.results) / spec.name}\n"
              f"{describe(spec.tune)}", flush=True)
        sweep_dir = run_tuning(spec, args.results, options)
    else:
        print(f"sweep {spec.name}: {len(spec.trials)} trials -> {Path(args.results) / spec.name}", flush=True)
        sweep_dir = (extend_sweep if args.extend else run_sweep)(spec, args.results, options)
    _print_status(sweep_dir, list_trials=False)
    if args.report:
        _write_report(sweep_dir, None, "png")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from harness.sweep import SweepOptions, resume_sweep

    args.sweep_path = Path(args.sweep_dir).resolve()
    from harness.tuning import is_tuning_sweep, resume_tuning

    options = SweepOptions(address=args.address, max_concurrent=args.max_concurrent, dashboard=args.dashboard)
    if is_tuning_sweep(args.sweep_dir):
        sweep_dir = resume_tuning(args.sweep_dir, options, rerun_errored=args.rerun_errored)
    else:
        sweep_dir = resume_sweep(args.sweep_dir, options, rerun_errored=args.rerun_errored)
    _print_status(sweep_dir, list_trials=False)
    if args.report:
        _write_report(sweep_dir, None, "png")
    return 0


def _ls(args: argparse.Namespace) -> int:
    _print_status(Path(args.sweep_dir), list_trials=args.trials)
    return 0


def _print_status(sweep_dir: Path, list_trials: bool) -> None:
    from harness.status import sweep_status

    print(sweep_status(sweep_dir, list_trials=list_trials))


def _report(args: argparse.Namespace) -> int:
    _write_report(Path(args.sweep_dir), args.out, args.format, args.baseline)
    return 0


def _write_report(sweep_dir: Path, out: str | None, fmt: str, baseline: str | None = None) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")  # reports are files; never open a window
    from analysis.aggregate import BASELINE, parse_filter
    from analysis.report import build_report
    from harness import store

    chosen = parse_filter(baseline) if baseline else BASELINE  # a bad filter fails before the sweep is read
    # Refuse a folder that is no sweep, or a manifest this version cannot read, before
    # anything is written; a copy of the Parquet folders without a manifest is reportable.
    has_parquet = (sweep_dir / "trials").is_dir() or (sweep_dir / "epochs").is_dir()
    if (sweep_dir / store.MANIFEST).exists() or not has_parquet:
        store.open_manifest(sweep_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", store.UnreadableFileWarning)
        html = build_report(sweep_dir, Path(out) if out else None, fmt=fmt, baseline=chosen)
    skipped = [str(w.message) for w in caught if issubclass(w.category, store.UnreadableFileWarning)]
    for line in dict.fromkeys(skipped):  # one line each (a read repeated after a race warns again)
        print(f"sambench report: {line}", file=sys.stderr)
    for warning in caught:
        if not issubclass(warning.category, store.UnreadableFileWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    print(f"report: {html}")
    print(f"        {Path(html).with_name('report.md')}")


def _bench(args: argparse.Namespace) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from harness.bench import SUITE, run_suite

    folder = run_suite("quick" if args.quick else "full", args.device, args.out, only=args.only or SUITE,
                       threads=args.threads, log=lambda line: print(line, flush=True))
    print((folder / "summary.md").read_text(), end="")
    print(f"results: {folder}")
    failed = _failed(folder)
    if failed:
        print(f"sambench bench: {failed}", file=sys.stderr)
    return 1 if failed else 0


def _failed(folder: Path) -> str | None:
    """The measurements that raised, as written in machine.parquet's ``failed``."""
    import pandas as pd

    return pd.read_parquet(folder / "machine.parquet")["failed"].iloc[0]


if __name__ == "__main__":
    sys.exit(main())
