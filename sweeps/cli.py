"""The `sweep` command: run a study of transformer configurations on a data file.

sweep run --spec sweeps/default.yaml --data data/demo.xlsx
python -m sweeps run --help
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
import yaml

from data import DataError, check_fold_counts, read_dataset, stratified_folds
from sweeps.baselines import log_baselines
from sweeps.spec import BudgetSection, Spec, SpecError, load_spec
from sweeps.study import (
    DEFAULT_STORAGE,
    PARENT_RUN_ATTR,
    load_or_create_study,
    open_storage,
    trials_counted,
)
from sweeps.tracking import (
    TAG_PREFIX,
    StudyTracker,
    TrackingConfig,
    TrackingConfigError,
    load_tracking_config,
    redact,
)

logger = logging.getLogger("sweeps")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_EXAMPLES = """\
examples:
  sweep run                                    the default study on the demo data
  sweep run --data bigset.xlsx --trials 40     your spreadsheet, 40 trials in all
  sweep run --spec sweeps/smoke.yaml           a two-minute check that everything works

Running the same command again resumes the study; --trials is the study's total budget.
Look at the results with `make ui` (MLflow) and `make dashboard` (optuna-dashboard).
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
    run.set_defaults(handler=_run)

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
    _configure_logging(args.verbose)
    try:
        return args.handler(args)
    except (SpecError, DataError, TrackingConfigError) as error:
        # Bad input stops the sweep before any trial; one line, no traceback.
        logger.error("%s", error)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.trials:
        spec = spec.model_copy(update={"budget": BudgetSection(trials=args.trials)})
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
    study = load_or_create_study(open_storage(args.storage), study_name, spec)
    recorded_hash = study.user_attrs.get("data_sha256")
    if recorded_hash and recorded_hash != dataset.sha256:
        raise DataError(
            f"{args.data}: study '{study_name}' in {storage_label} was run on different data "
            f"(sha256 {recorded_hash[:12]}…, this file {dataset.sha256[:12]}…); pass "
            "--study with a new name to start a new study"
        )
    budget = spec.budget.trials
    done = trials_counted(study)
    logger.info(
        "study '%s' in %s: %d/%d trials done; %d rows x %d values from %s, %d folds, metric %s",
        study_name,
        storage_label,
        done,
        budget,
        dataset.features.shape[0],
        dataset.features.shape[1],
        args.data,
        spec.cv.folds,
        spec.cv.metric,
    )
    if done >= budget:
        logger.info("the budget of %d trials is spent; nothing to run", budget)
        _log_outcome(study, spec)
        return 0

    tracker = StudyTracker(tracking, study_name)
    spec_yaml = yaml.safe_dump(spec.resolved(), sort_keys=False)
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
    study.set_user_attr(PARENT_RUN_ATTR, parent_run_id)
    study.set_user_attr("data_sha256", dataset.sha256)
    study.set_user_attr("data_file", str(args.data))
    study.set_user_attr("spec", spec.resolved())
    # One set of folds for the baselines and every trial, so their scores compare.
    folds = stratified_folds(dataset.labels, spec.cv.folds, spec.seed)
    try:
        log_baselines(study, tracker, spec, dataset, folds=folds)
    except Exception:
        # Baselines only give the trials a scale; losing them must not cost the study.
        logger.exception("the baselines could not be scored; the sweep goes on without them")

    # Imported here: TensorFlow takes seconds to load, which --help and bad input need not wait.
    from sweeps.objective import Objective
    from sweeps.runner import SweepError, run_until_budget

    objective = Objective(spec, dataset, folds, tracker)
    status = "FAILED"
    try:
        run_until_budget(study, objective, budget, metric=spec.cv.metric)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        logger.warning("interrupted; run the same command again to resume the study")
        return EXIT_INTERRUPTED
    except SweepError as error:
        logger.error("%s", error)
        return 1
    finally:
        tracker.end_study(status)
    _log_outcome(study, spec)
    return 0


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


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
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


if __name__ == "__main__":
    sys.exit(main())
