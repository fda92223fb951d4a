"""The `sweep` command: run a study of transformer configurations on a data file.

sweep run --spec sweeps/default.yaml --data data/demo.xlsx
python -m sweeps run --help
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from data import DataError, Dataset, check_fold_counts, read_dataset, stratified_folds
from sweeps.baselines import log_baselines
from sweeps.spec import BudgetSection, Spec, SpecError, load_spec
from sweeps.study import (
    DEFAULT_STORAGE,
    PARENT_RUN_ATTR,
    BudgetGate,
    StorageError,
    is_alive_here,
    load_or_create_study,
    open_storage,
    trials_counted,
    trials_finished,
)
from sweeps.tracking import (
    TAG_PREFIX,
    StudyTracker,
    TrackingConfig,
    TrackingConfigError,
    load_tracking_config,
    redact,
)
from sweeps.workers import (
    STORAGE_VARIABLE,
    StudyRecordError,
    WorkerPlan,
    WorkerPlanError,
    WorkerPool,
    available_cpus,
    close_runs_of_abandoned,
    closing_runs_on_failure,
    find_gpus,
    plan_workers,
    record_for_workers,
    run_worker,
    this_worker,
    worker_command,
    worker_tags,
)

logger = logging.getLogger("sweeps")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# Bad input stops a command before any trial, with one line that says what to fix.
BAD_INPUT_ERRORS = (
    SpecError,
    DataError,
    TrackingConfigError,
    WorkerPlanError,
    StudyRecordError,
    StorageError,
)
# Long enough for the garbage collector's callbacks to have returned.
_REDELIVERY_DELAY_S = 0.05

_EXAMPLES = """\
examples:
  sweep run                                    the default study on the demo data
  sweep run --data bigset.xlsx --trials 40     your spreadsheet, 40 trials in all
  sweep run --spec sweeps/smoke.yaml           a two-minute check that everything works
  sweep run --workers 2                        two worker processes sharing the CPU cores
  sweep run --gpus auto --workers-per-gpu 2    two worker processes on each GPU

Running the same command again resumes the study; --trials is the study's total budget.
Look at the results with `make ui` (MLflow) and `make dashboard` (optuna-dashboard).
"""

_WORKER_EXAMPLES = """\
examples:
  sweep worker --study default-demo
  SWEEP_STORAGE=postgresql://sweep:secret@db/optuna sweep worker --study default-demo

Start the study with `sweep run` first: it records in the study the spec, the data file's
hash and path, and the MLflow parent run, which each worker reads from there. A worker on
another machine needs the same data file (--data where its path differs), the same storage
and the same MLflow tracking store (MLFLOW_TRACKING_URI).
"""

_REPORT_EXAMPLES = """\
examples:
  sweep report                                 the default study on the demo data
  sweep report --data bigset.xlsx --top 10     the study `sweep run --data bigset.xlsx` ran
  sweep report --study default-demo --out r.md a study by name, written to r.md
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, with a --help for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Hyperparameter sweeps of Keras transformers on a spreadsheet of ordered "
        "real values, scored by stratified k-fold cross-validation, with every trial logged "
        "to MLflow and checked for prediction collapse (one class predicted for every row).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run (or resume) a study until its trial budget is spent",
        description="Run (or resume) a study until its trial budget is spent. The data file "
        "is read and checked, and the spec validated, before anything is created.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_study_arguments(run)
    run.add_argument(
        "--trials",
        type=_positive_int,
        help="the study's total trial budget, overriding the spec's budget.trials",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        help="worker processes to run trials in parallel, each with its share of the CPU "
        "cores (default: 1, in this process; with --gpus, GPUs x --workers-per-gpu)",
    )
    run.add_argument(
        "--gpus",
        help="GPUs for the workers, e.g. 0,1, or auto for every GPU nvidia-smi lists; each "
        "worker sees one, in turn",
    )
    run.add_argument(
        "--workers-per-gpu",
        type=_positive_int,
        default=1,
        help="workers sharing each GPU (default: %(default)s)",
    )
    run.set_defaults(handler=_run)

    worker = commands.add_parser(
        "worker",
        help="join a study that `sweep run` prepared and run its trials, e.g. on another machine",
        description="Join a study that `sweep run` prepared and run its trials until the "
        "study's budget is spent. Everything else (spec, data hash, MLflow parent run) is "
        "read from the study; any number of workers may share it.",
        epilog=_WORKER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("--study", required=True, help="the study's name, as `sweep run` logs it")
    worker.add_argument(
        "--storage",
        help=f"Optuna storage: a journal file path or a database URL (default: "
        f"${STORAGE_VARIABLE}, else {DEFAULT_STORAGE})",
    )
    worker.add_argument(
        "--data",
        type=Path,
        help="the data file, if not where the study's launcher read it; it must be the same file",
    )
    worker.add_argument(
        "--tracking-config",
        type=Path,
        help="MLflow settings (default: MLFLOW_TRACKING_URI, else the study's tracking URI)",
    )
    worker.add_argument(
        "--index",
        type=_non_negative_int,
        help="this worker's number, which offsets its sampler's seed (default: derived from "
        "the host and process)",
    )
    worker.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    worker.set_defaults(handler=_worker)

    report = commands.add_parser(
        "report",
        help="report a study: best trials, collapse by parameter, importances, baselines",
        description="Report a study: its best trials, the collapse rate of each searched "
        "parameter value, parameter importances, and the baselines. The report is printed, "
        "written as Markdown, logged to the study's MLflow parent run and saved as the "
        "study's note in optuna-dashboard.",
        epilog=_REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_study_arguments(report)
    report.add_argument(
        "--out", type=Path, help="Markdown file to write (default: reports/<study>.md)"
    )
    report.add_argument(
        "--top",
        type=_positive_int,
        default=5,
        help="how many of the best trials to list (default: %(default)s)",
    )
    report.set_defaults(handler=_report)
    return parser


def _add_study_arguments(command: argparse.ArgumentParser) -> None:
    """The options that name a study and its stores, shared by run and report."""
    command.add_argument(
        "--spec",
        type=Path,
        default=Path("sweeps/default.yaml"),
        help="sweep spec (YAML): search space, folds, epochs, collapse thresholds, sampler, "
        "pruner, budget (default: %(default)s)",
    )
    command.add_argument(
        "--data",
        type=Path,
        default=Path("data/demo.xlsx"),
        help=".xlsx or .csv; by default no header, the label in column 0 and the ordered "
        "values after it (default: %(default)s)",
    )
    command.add_argument(
        "--study",
        help="study name (default: the spec's name and the data file's stem, e.g. "
        "default-demo); the same name resumes the same study",
    )
    command.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Optuna storage: a journal file path, or a database URL such as "
        "postgresql://user:password@host/db (default: %(default)s)",
    )
    command.add_argument(
        "--tracking-config",
        type=Path,
        default=Path("mlflow.yaml"),
        help="MLflow settings; MLFLOW_TRACKING_URI overrides its tracking_uri "
        "(default: %(default)s)",
    )
    command.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")


def _tracking_config(args: argparse.Namespace) -> TrackingConfig:
    # Without an mlflow.yaml (run outside the repository), the built-in defaults apply.
    config = args.tracking_config
    return load_tracking_config(config if config.exists() else None)


def _study_name(args: argparse.Namespace, spec: Spec) -> str:
    return args.study or f"{spec.name}-{Path(args.data).stem}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sweep` console script.

    Args:
        argv: Arguments without the program name; None reads sys.argv.

    Returns:
        The exit status: 0 done, 1 the sweep failed, 2 bad input, 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    worker_index = getattr(args, "index", None) if args.command == "worker" else None
    _configure_logging(args.verbose, worker=worker_index)
    # A stop request (a scheduler's or `kill`'s SIGTERM) ends trials as cleanly as Ctrl-C.
    # Only the main thread may set a handler; elsewhere SIGTERM keeps its default.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _redeliver_interrupt(previous_hook)
    try:
        return args.handler(args)
    except BAD_INPUT_ERRORS as error:
        # Bad input stops the sweep before any trial; one line, no traceback.
        logger.error("%s", error)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        logger.warning("interrupted")
        return EXIT_INTERRUPTED
    finally:
        sys.unraisablehook = previous_hook
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _redeliver_interrupt(
    previous: Callable[[Any], object],
) -> Callable[[Any], object]:
    """An unraisable-exception hook that does not let Python drop a Ctrl-C.

    A KeyboardInterrupt raised while the garbage collector runs a callback (JAX registers
    one; training triggers many collections) cannot propagate: Python reports it as
    "Exception ignored" and carries on, so a worker that the launcher interrupted once
    would finish its trial and ask for the next. The hook sends the signal again.
    """

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # Sent again from another thread a moment later, once the callback has returned:
            # raised from here, it would be dropped again.
            timer = threading.Timer(_REDELIVERY_DELAY_S, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    return hook


def _plan(args: argparse.Namespace) -> list[WorkerPlan] | None:
    """The worker processes to start, or None to run the trials in this process."""
    if not args.gpus and args.workers in (None, 1):
        return None
    gpus = find_gpus(args.gpus) if args.gpus else None
    return plan_workers(args.workers, gpus, args.workers_per_gpu, available_cpus())


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.trials:
        spec = spec.model_copy(update={"budget": BudgetSection(trials=args.trials)})
    plans = _plan(args)
    dataset = read_dataset(
        args.data,
        label_column=spec.data.label_column,
        header_row=spec.data.header_row,
        sheet=spec.data.sheet,
    )
    check_fold_counts(dataset, spec.cv.folds)
    tracking = _tracking_config(args)
    study_name = _study_name(args, spec)

    storage_label = redact(args.storage)
    storage = open_storage(args.storage)
    study = load_or_create_study(storage, study_name, spec)
    _check_same_data(study, dataset, args.data, storage_label)
    tracker = StudyTracker(tracking, study_name)
    gate = BudgetGate.for_storage(
        storage, args.storage, study_name, on_abandoned=close_runs_of_abandoned(tracker)
    )
    _fail_orphaned_trials(study, gate, tracker)
    budget = spec.budget.trials
    done = trials_finished(study)
    running = trials_counted(study) - done
    logger.info(
        "study '%s' in %s: %d/%d trials done%s; %d rows x %d values from %s, %d folds, metric %s",
        study_name,
        storage_label,
        done,
        budget,
        f" ({running} running)" if running else "",
        dataset.features.shape[0],
        dataset.features.shape[1],
        args.data,
        spec.cv.folds,
        spec.cv.metric,
    )
    if done + running >= budget:
        logger.info(
            "the budget of %d trials is %s; nothing to run",
            budget,
            "spent" if done >= budget else "taken by the running trials",
        )
        _log_outcome(study, spec)
        return 0

    spec_yaml = yaml.safe_dump(spec.resolved(), sort_keys=False)
    # One set of folds for the baselines and every trial, so their scores compare.
    folds = stratified_folds(dataset.labels, spec.cv.folds, spec.seed)
    # Under the study's lock, so that two launchers started at once check the data against
    # the same record and share one MLflow parent run instead of creating one each.
    with gate.held():
        _check_same_data(study, dataset, args.data, storage_label)
        parent_run_id = tracker.start_study(
            parent_run_id=study.user_attrs.get(PARENT_RUN_ATTR),
            params={
                "spec": spec.name,
                "data_file": str(args.data),
                "data_rows": dataset.features.shape[0],
                "data_values": dataset.features.shape[1],
                "label_mapping": dataset.label_mapping,
                "folds": spec.cv.folds,
                "metric": spec.cv.metric,
                "budget": budget,
                "seed": spec.seed,
            },
            tags={
                f"{TAG_PREFIX}data_sha256": dataset.sha256,
                f"{TAG_PREFIX}storage": storage_label,
            },
            spec_yaml=spec_yaml,
        )
        # Everything a worker needs is recorded in the study before any worker starts.
        study.set_user_attr(PARENT_RUN_ATTR, parent_run_id)
        study.set_user_attr("data_sha256", dataset.sha256)
        study.set_user_attr("data_file", str(args.data))
        study.set_user_attr("spec", spec.resolved())
        record_for_workers(study, data_path=args.data, tracking=tracking, folds=folds)

    status = "FAILED"
    try:
        code = _spend_budget(args, spec, plans, study, gate, tracker, dataset, folds)
        status = {0: "FINISHED", EXIT_INTERRUPTED: "KILLED"}.get(code, "FAILED")
    except KeyboardInterrupt:
        status = "KILLED"
        code = EXIT_INTERRUPTED
    finally:
        # Whatever happened, the parent run is not left RUNNING.
        tracker.end_study(status)
    if code == EXIT_INTERRUPTED:
        logger.warning("interrupted; run the same command again to resume the study")
    elif code == 0:
        _log_outcome(study, spec)
    return code


def _spend_budget(
    args: argparse.Namespace,
    spec: Spec,
    plans: list[WorkerPlan] | None,
    study: optuna.Study,
    gate: BudgetGate,
    tracker: StudyTracker,
    dataset: Dataset,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> int:
    """Score the baselines, then run trials here or in worker processes until the budget."""
    try:
        # Under the study's lock: launchers started together score the baselines once.
        with gate.held():
            log_baselines(study, tracker, spec, dataset, folds=folds)
    except Exception:
        # Baselines only give the trials a scale; losing them must not cost the study.
        logger.exception("the baselines could not be scored; the sweep goes on without them")
    if plans is not None:
        return _run_workers(args, plans, study=study, gate=gate, budget=spec.budget.trials)

    # Imported here: TensorFlow takes seconds to load, which --help and bad input need not wait.
    from sweeps.objective import Objective
    from sweeps.runner import SweepError, run_until_budget

    worker = this_worker(0)
    tracker.trial_tags = worker_tags(worker)
    objective = closing_runs_on_failure(Objective(spec, dataset, folds, tracker), tracker)
    try:
        run_until_budget(
            study, objective, spec.budget.trials, metric=spec.cv.metric, gate=gate, worker=worker
        )
    except SweepError as error:
        logger.error("%s", error)
        return 1
    return 0


def _check_same_data(
    study: optuna.Study, dataset: Dataset, data: Path, storage_label: str
) -> None:
    """Refuse to go on with a study that was run on a different data file."""
    recorded_hash = study.user_attrs.get("data_sha256")
    if recorded_hash and recorded_hash != dataset.sha256:
        raise DataError(
            f"{data}: study '{study.study_name}' in {storage_label} was run on different data "
            f"(sha256 {recorded_hash[:12]}…, this file {dataset.sha256[:12]}…); pass "
            "--study with a new name to start a new study"
        )


def _fail_orphaned_trials(study: optuna.Study, gate: BudgetGate, tracker: StudyTracker) -> None:
    """Fail the running trials of this machine's dead workers, left by a killed sweep."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        return
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_run_id:
        # To find the runs dead workers had no time to record; without the parent run (a
        # new one will be made) only recorded runs can be closed.
        with contextlib.suppress(TrackingConfigError):
            tracker.attach(parent_run_id)
    gate.fail_abandoned(
        study, lambda worker: not is_alive_here(worker), "its worker process is gone"
    )


def _run_workers(
    args: argparse.Namespace,
    plans: list[WorkerPlan],
    *,
    study: optuna.Study,
    gate: BudgetGate,
    budget: int,
) -> int:
    # No more workers than trials left: an idle worker would only load TensorFlow and leave.
    plans = plans[: max(budget - trials_counted(study), 1)]
    logger.info("starting %s", ", ".join(plan.describe() for plan in plans))
    config = args.tracking_config
    pool = WorkerPool(
        plans,
        command=worker_command(
            study.study_name,
            data_path=Path(args.data).resolve(),
            tracking_config=config.resolve() if config.exists() else None,
            verbose=args.verbose,
        ),
        study=study,
        gate=gate,
        budget=budget,
        storage_url=args.storage,
    )
    return pool.run()


def _worker(args: argparse.Namespace) -> int:
    return run_worker(
        study_name=args.study,
        storage_url=args.storage or os.environ.get(STORAGE_VARIABLE) or DEFAULT_STORAGE,
        index=args.index,
        data=args.data,
        tracking_config=args.tracking_config,
    )


def _report(args: argparse.Namespace) -> int:
    from sweeps.report import ReportError, load_study, make_report, publish_report

    study_name = _study_name(args, load_spec(args.spec))
    try:
        study = load_study(args.storage, study_name)
    except ReportError as error:
        logger.error("%s", error)
        return EXIT_BAD_INPUT
    tracking = _tracking_config(args)
    report = make_report(study, top=args.top, tracking=tracking)
    publish_report(
        study, report, out=args.out or Path("reports") / f"{study_name}.md", tracking=tracking
    )
    # The report is this command's output, so it goes to stdout; progress goes to the log.
    sys.stdout.write(report.text())
    return 0


def _log_outcome(study: optuna.Study, spec: Spec) -> None:
    from sweeps.report import collapse_rates

    try:
        best = study.best_trial
    except ValueError:
        # With the collapse constraint, Optuna's best trial is the best one that never
        # collapsed; completed trials that all collapsed leave none.
        completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if completed:
            logger.warning(
                "no best trial: all %d completed trials had a collapsed fold", len(completed)
            )
        else:
            logger.warning("no trial completed")
        return
    logger.info(
        "best trial %d: %s %.3f, collapsed folds %d, %s",
        best.number,
        spec.cv.metric,
        best.value,
        best.user_attrs.get("collapsed_folds", 0),
        best.params,
    )
    rates = collapse_rates(study)
    for name in ("embedding", "scaling", "pooling"):
        line = ", ".join(rate.describe() for rate in rates if rate.parameter == name)
        if line:
            logger.info("collapse by %s: %s", name, line)
    logger.info("see the runs with `make ui` and the study with `make dashboard`")


def _configure_logging(verbose: bool, *, worker: int | None = None) -> None:
    # A worker's lines are interleaved with its siblings' on the launcher's terminal.
    label = f"[worker {worker}] " if worker is not None else ""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)-7s {label}%(message)s",
        datefmt="%H:%M:%S",
    )
    # Each finished trial already gets one line from the runner; these libraries' own
    # progress lines would bury it.
    for noisy in ("mlflow", "alembic", "absl", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
