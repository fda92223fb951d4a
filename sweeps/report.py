"""A study's report: the best trials, what collapses and why, and how the baselines compare.

``sweep report`` builds it from the Optuna study alone (trials, their user attributes and
the baselines kept in the study's user attributes), reading MLflow only for the best
trial's mean metrics. The same report is printed as plain text, written as Markdown,
logged to the study's parent run and saved as the study's note in optuna-dashboard.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweeps.baselines import BASELINE_ATTR_PREFIX
from sweeps.study import PARENT_RUN_ATTR, open_storage
from sweeps.tracking import TrackingConfig, redact

logger = logging.getLogger(__name__)

# Trials that ran folds, and so say whether they collapsed.
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# The parameters shown for each of the best trials.
KEY_PARAMETERS = ("embedding", "scaling", "pooling", "learning_rate", "depth", "width")
# The metrics compared between the best trial and the baselines.
COMPARED_METRICS = ("balanced_accuracy", "accuracy", "roc_auc", "mcc", "majority_share")
BASELINE_LABELS = {"logistic": "logistic regression", "majority": "majority class"}
REPORT_ARTIFACT = "report.md"
RATE_METRIC_PREFIX = "collapse_rate"
# MLflow metric names take letters, digits and _ - . / : and spaces; anything else in a
# parameter's value is replaced.
_METRIC_UNSAFE = re.compile(r"[^\w.\- :/]")
# A numeric parameter with more distinct values than this is binned into quantile ranges.
_MAX_DISTINCT_UNBINNED = 4
_NUM_BINS = 3
# fANOVA fits a random forest to the trials; with fewer than this its importances are noise.
_MIN_IMPORTANCE_TRIALS = 4
_IMPORTANCE_SEED = 0
# When predicting the majority class for every row scores at least this accuracy, plain
# accuracy rewards a collapsed model, and the report says so.
IMBALANCE_ACCURACY = 0.6


class ReportError(ValueError):
    """The report cannot be made; the message names the storage, the study and the fix."""


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of text cells: a header and rows of the same length."""

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class Bullets:
    """A list of one-line items."""

    items: list[str]


Block = str | Table | Bullets


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled part of the report: paragraphs, lists and tables in order."""

    title: str
    blocks: list[Block]


@dataclasses.dataclass(frozen=True)
class CollapseRate:
    """How many trials collapsed among those with one value (or range) of a parameter.

    Attributes:
        parameter: The parameter's name.
        value: The value, or a range such as ``[0.001, 0.003)`` for a binned number.
        collapsed: Trials with at least one collapsed fold.
        total: Trials counted (complete and pruned) with this value.
        binned: Whether ``value`` is a range.
        constant: Collapsed trials with a fold whose output did not depend on its input at
            all (the same probability for every row), the severest collapse.
    """

    parameter: str
    value: str
    collapsed: int
    total: int
    binned: bool = False
    constant: int = 0

    @property
    def rate(self) -> float:
        """The share of these trials that collapsed."""
        return self.collapsed / self.total if self.total else 0.0

    @property
    def label(self) -> str:
        """``embedding=token``, or ``learning_rate in [0.001, 0.003)`` for a range."""
        return (
            f"{self.parameter} in {self.value}"
            if self.binned
            else f"{self.parameter}={self.value}"
        )

    @property
    def severity(self) -> tuple[float, float, int, int]:
        """What ranks values by collapse: the rate, then the share with a constant output,
        then how many trials collapsed, then how many were tried."""
        constant_share = self.constant / self.total if self.total else 0.0
        return (self.rate, constant_share, self.collapsed, self.total)

    def describe(self) -> str:
        """For example ``embedding=token: 3/3 trials collapsed (100%), 3 with a constant
        output``."""
        constant = f", {self.constant} with a constant output" if self.constant else ""
        return (
            f"{self.label}: {self.collapsed}/{self.total} trials collapsed ({self.rate:.0%})"
            f"{constant}"
        )


@dataclasses.dataclass(frozen=True)
class StudyReport:
    """A study's report, ready to print or to write as Markdown.

    Attributes:
        study_name: The study it describes.
        summary: One line on the study: its trials, metric, spec and data.
        sections: The report's parts, in order.
        verdict: One line naming the parameter value that collapses most, with its figures.
        collapse_rates: The collapse rate of each value of each searched parameter.
    """

    study_name: str
    summary: str
    sections: list[Section]
    verdict: str
    collapse_rates: list[CollapseRate] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        """The report as plain text, for a terminal."""
        title = f"Study report: {self.study_name}"
        parts = [f"{title}\n{'=' * len(title)}\n{self.summary}"]
        for section in self.sections:
            body = "\n\n".join(_text_block(block) for block in section.blocks)
            parts.append(f"{section.title}\n{'-' * len(section.title)}\n{body}")
        parts.append(self.verdict)
        return "\n\n".join(parts) + "\n"

    def markdown(self) -> str:
        """The report as Markdown, for a file, MLflow and optuna-dashboard."""
        parts = [f"# Study report: {self.study_name}", self.summary]
        for section in self.sections:
            parts.append(f"## {section.title}")
            parts += [_markdown_block(block) for block in section.blocks]
        parts.append(f"**{self.verdict}**")
        return "\n\n".join(parts) + "\n"


def load_study(storage_url: str, study_name: str) -> optuna.Study:
    """Open an existing study for reading, creating nothing when it is absent.

    Args:
        storage_url: A journal file path or a database URL, as ``sweep run`` takes.
        study_name: The study's name.

    Returns:
        The study.

    Raises:
        ReportError: The storage or the study does not exist; the message lists the
            studies that do.
    """
    # Opening a journal file creates it; a report on a mistyped path must not.
    if "://" not in storage_url and not Path(storage_url).is_file():
        raise ReportError(
            f"{storage_url}: no such study storage; pass the --storage that `sweep run` used"
        )
    storage = open_storage(storage_url)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        existing = ", ".join(sorted(names)) or "none"
        raise ReportError(
            f"{redact(storage_url)}: no study named '{study_name}'; studies there: {existing} "
            "(pass one with --study)"
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def collapse_rates(study: optuna.Study) -> list[CollapseRate]:
    """The collapse rate of each value of each searched parameter.

    A trial counts as collapsed when any of its folds collapsed. Complete and pruned trials
    are counted; a trial that never sampled a parameter (one that belongs to another
    choice, such as ``patch_length``) is left out of that parameter's tally. Numbers with
    many distinct values are binned into quantile ranges.

    Args:
        study: The study.

    Returns:
        One entry per parameter value (or range), grouped by parameter in the spec's order,
        the highest rate first within each parameter (then the most constant outputs).
    """
    trials = study.get_trials(deepcopy=False, states=COUNTED_STATES)
    rates: list[CollapseRate] = []
    for name in _searched_parameters(study, trials):
        with_value = [trial for trial in trials if name in trial.params]
        if not with_value:
            continue
        values = [trial.params[name] for trial in with_value]
        distribution = with_value[0].distributions[name]
        numeric = isinstance(distribution, FloatDistribution | IntDistribution)
        if numeric and len(set(values)) > _MAX_DISTINCT_UNBINNED:
            labels, binned = _quantile_bins(
                values, integer=isinstance(distribution, IntDistribution)
            )
        else:
            labels, binned = [str(value) for value in values], False
        tally: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for label, trial in zip(labels, with_value, strict=True):
            tally[label][0] += _collapsed(trial)
            tally[label][1] += 1
            tally[label][2] += _constant(trial)
        group = [
            CollapseRate(name, label, collapsed, total, binned, constant)
            for label, (collapsed, total, constant) in tally.items()
        ]
        order = (lambda rate: _bin_start(rate.value)) if binned else (lambda rate: rate.value)
        # Most collapsing first; among equal rates, the one with more constant outputs.
        rates += sorted(
            sorted(group, key=order), key=lambda rate: (-rate.severity[0], -rate.severity[1])
        )
    return rates


def collapse_driver(rates: Sequence[CollapseRate]) -> CollapseRate | None:
    """The parameter value (or range) with the highest collapse rate.

    Ties go to the value whose trials more often gave a constant output (a model that
    ignores its input, the plainest sign of a structural cause), then to the value with
    more collapsed trials, then to the one tried more often.

    Args:
        rates: From ``collapse_rates``.

    Returns:
        The driver, or None when no trial collapsed.
    """
    candidates = [rate for rate in rates if rate.collapsed]
    if not candidates:
        return None
    return max(candidates, key=lambda rate: rate.severity)


def importances(
    study: optuna.Study, target: Callable[[FrozenTrial], float] | None = None
) -> dict[str, float] | str:
    """fANOVA importances of the parameters for the objective or another target.

    Args:
        study: The study; Optuna uses its complete trials only.
        target: What to explain, from a trial; None explains the objective value.

    Returns:
        Each parameter's share of the explained variance, largest first, or a sentence
        saying why there is nothing to show (too few trials, a target that never varies).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < _MIN_IMPORTANCE_TRIALS:
        return (
            f"not enough trials: {len(complete)} complete, at least {_MIN_IMPORTANCE_TRIALS} "
            "needed"
        )
    values = [target(trial) if target else trial.value for trial in complete]
    if len(set(values)) == 1:
        return f"not enough variation: the same value ({values[0]:.3g}) in every complete trial"
    try:
        # Unnormalised: Optuna spreads an all-zero result evenly, which would read as a finding.
        # The flag is marked experimental, and its warning would be repeated on every report.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            raw = get_param_importances(
                study,
                evaluator=FanovaImportanceEvaluator(seed=_IMPORTANCE_SEED),
                target=target,
                normalize=False,
            )
    except (ValueError, RuntimeError) as error:
        return f"not enough trials for fANOVA ({error})"
    total = sum(raw.values())
    if not raw or total <= 0 or not math.isfinite(total):
        return "not enough trials: no parameter varies across the complete trials"
    return {name: value / total for name, value in raw.items()}


def collapse_share(trial: FrozenTrial) -> float:
    """The share of a trial's folds that collapsed, the target of the collapse importances."""
    return trial.user_attrs.get("collapsed_folds", 0) / max(
        trial.user_attrs.get("folds_run", 1), 1
    )


def build_report(
    study: optuna.Study, *, top: int = 5, best_run_metrics: Mapping[str, float] | None = None
) -> StudyReport:
    """Build a study's report from its trials and user attributes.

    Args:
        study: The study.
        top: How many of the best trials to list.
        best_run_metrics: The best trial's mean metrics as logged to MLflow, for the
            comparison with the baselines; None shows what Optuna holds.

    Returns:
        The report.
    """
    spec = study.user_attrs.get("spec", {})
    metric = spec.get("cv", {}).get("metric", "value")
    best = _best_trial(study)
    rates = collapse_rates(study)
    sections = [
        _best_trials_section(study, top, metric, spec.get("fixed", {})),
        _collapse_section(rates),
        _importance_section(study),
        _baseline_section(study, best, metric, best_run_metrics or {}),
    ]
    balance = _balance_section(study, metric)
    if balance is not None:
        sections.insert(1, balance)
    return StudyReport(
        study_name=study.study_name,
        summary=_summary(study, metric, spec),
        sections=sections,
        verdict=_verdict(rates, study),
        collapse_rates=rates,
    )


def make_report(
    study: optuna.Study, *, top: int = 5, tracking: TrackingConfig | None = None
) -> StudyReport:
    """Build the report, reading the best trial's mean metrics from MLflow when it can.

    Args:
        study: The study.
        top: How many of the best trials to list.
        tracking: Where the study's runs are; None reads nothing from MLflow.

    Returns:
        The report.
    """
    best = _best_trial(study)
    run_id = best.user_attrs.get("mlflow_run_id") if best else None
    metrics = None
    if tracking is not None and run_id:
        try:
            client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri)
            metrics = client.get_run(run_id).data.metrics
        except MlflowException as error:
            logger.warning("best trial's run %s not read from MLflow (%s)", run_id, error)
    return build_report(study, top=top, best_run_metrics=metrics)


def publish_report(
    study: optuna.Study, report: StudyReport, *, out: Path, tracking: TrackingConfig | None
) -> Path:
    """Write the Markdown report, log it to the parent run and save it as the study's note.

    On the parent run the report is an artifact, and the collapse rate of every value of a
    searched choice is a metric, ``collapse_rate/embedding/token``, so that MLflow's run page
    and its charts compare them without opening the report.

    Args:
        study: The study the report describes.
        report: The report.
        out: The Markdown file to write; missing folders are created.
        tracking: Where the study's parent run is; None skips MLflow.

    Returns:
        The Markdown file.
    """
    markdown = report.markdown()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown, encoding="utf-8")
    logger.info("report written to %s", out)

    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if tracking is not None and parent_run_id:
        try:
            client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri)
            client.log_text(parent_run_id, markdown, REPORT_ARTIFACT)
            client.log_batch(parent_run_id, metrics=_rate_metrics(report.collapse_rates))
            logger.info("report logged to MLflow parent run %s", parent_run_id)
        except MlflowException as error:
            logger.warning(
                "report not logged to MLflow: parent run %s at %s (%s)",
                parent_run_id,
                redact(tracking.tracking_uri),
                error,
            )
    elif tracking is not None:
        logger.warning("study '%s' has no MLflow parent run; report not logged", study.study_name)

    # Imported here: the dashboard package is only needed for this one call.
    from optuna_dashboard import save_note

    # The note lives in the study's system attributes, which every Optuna storage keeps.
    save_note(study, markdown)
    logger.info("report saved as the study's note in optuna-dashboard")
    return out


def _rate_metrics(rates: Sequence[CollapseRate]) -> list[Metric]:
    """The collapse rates of unbinned values as MLflow metrics, named parameter and value.

    A binned range (``[0.001, 0.003)``) has no name MLflow accepts; the report shows it.
    """
    timestamp = int(time.time() * 1000)
    return [
        Metric(
            f"{RATE_METRIC_PREFIX}/{rate.parameter}/{_METRIC_UNSAFE.sub('_', rate.value)}",
            rate.rate,
            timestamp,
            0,
        )
        for rate in rates
        if not rate.binned
    ]


def _searched_parameters(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    searched = list(study.user_attrs.get("spec", {}).get("search", {}))
    seen = {name for trial in trials for name in trial.params}
    return [name for name in searched if name in seen] + sorted(seen - set(searched))


def _quantile_bins(values: list[float], *, integer: bool) -> tuple[list[str], bool]:
    """Label each value with the quantile range it falls in: ``[low, high)``, last closed."""
    array = np.asarray(values, dtype=np.float64)
    edges = np.quantile(array, np.linspace(0.0, 1.0, _NUM_BINS + 1))
    if integer:
        # Whole-number edges, so that a label such as [8, 14) says where each value went.
        edges = np.round(edges)
    edges = np.unique(edges)
    # (values,): 0 for the first range ... len(edges) - 2 for the last, which holds the max.
    index = np.clip(np.searchsorted(edges, array, side="right") - 1, 0, len(edges) - 2)
    number = (lambda value: str(int(value))) if integer else (lambda value: f"{value:.3g}")
    labels = []
    for position in index:
        low, high = edges[position], edges[position + 1]
        closing = "]" if position == len(edges) - 2 else ")"
        labels.append(f"[{number(low)}, {number(high)}{closing}")
    return labels, True


def _bin_start(label: str) -> float:
    return float(label[1:].split(",")[0])


def _collapsed(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("collapsed_folds", 0) > 0


def _constant(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("constant_folds", 0) > 0


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def _summary(study: optuna.Study, metric: str, spec: Mapping[str, Any]) -> str:
    states = collections.Counter(
        trial.state.name.lower() for trial in study.get_trials(deepcopy=False)
    )
    counts = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none"
    direction = "higher" if study.direction == StudyDirection.MAXIMIZE else "lower"
    data_file = study.user_attrs.get("data_file", "unknown")
    return (
        f"Trials: {counts}. Metric: mean {metric} over {spec.get('cv', {}).get('folds', '?')} "
        f"folds ({direction} is better). Spec: {spec.get('name', 'unknown')}; "
        f"data: {data_file}."
    )


def _best_trials_section(
    study: optuna.Study, top: int, metric: str, fixed: Mapping[str, Any]
) -> Section:
    trials = study.get_trials(deepcopy=False, states=COUNTED_STATES)
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    # Complete trials first by value; pruned ones after, by their running mean when stopped.
    ranked = sorted(
        trials,
        key=lambda trial: (trial.state != TrialState.COMPLETE, sign * _score(trial)),
    )[:top]
    if not ranked:
        return Section("Best trials", ["No trial has finished yet."])
    rows = []
    for trial in ranked:
        score = _score(trial)
        value = "—" if math.isnan(score) else f"{score:.3f}"
        if trial.state == TrialState.PRUNED and value != "—":
            value += " (pruned)"
        folds = trial.user_attrs.get("folds_run", 0)
        rows.append(
            (
                str(trial.number),
                value,
                f"{trial.user_attrs.get('collapsed_folds', 0)}/{folds}",
                trial.state.name,
                "COLLAPSED" if _collapsed(trial) else "",
                *(_format(trial.params.get(name, fixed.get(name))) for name in KEY_PARAMETERS),
            )
        )
    headers = ("trial", metric, "collapsed folds", "state", "flag", *KEY_PARAMETERS)
    note = (
        "A pruned trial's value is its running mean when it was stopped; parameters that "
        "were not searched show the spec's fixed value."
    )
    return Section("Best trials", [Table(headers, rows), note])


def _score(trial: FrozenTrial) -> float:
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return math.nan


def _collapse_section(rates: list[CollapseRate]) -> Section:
    if not rates:
        return Section("Collapse by parameter", ["No trial has finished yet."])
    intro = (
        "A trial counts as collapsed when at least one of its folds predicted one class for "
        "(nearly) every row; complete and pruned trials are counted. A constant output is "
        "the severest collapse: the same probability for every row, so the input never "
        "reached the output."
    )
    return Section("Collapse by parameter", [intro, Bullets([rate.describe() for rate in rates])])


def _importance_section(study: optuna.Study) -> Section:
    objective = importances(study)
    collapse = importances(study, target=collapse_share)
    blocks: list[Block] = []
    if isinstance(objective, dict) and isinstance(collapse, dict):
        names = list(dict.fromkeys([*objective, *collapse]))
        rows = [(name, _share(objective.get(name)), _share(collapse.get(name))) for name in names]
        blocks.append(Table(("parameter", "objective", "collapse"), rows))
    else:
        for label, result in (("Objective", objective), ("Collapse", collapse)):
            if isinstance(result, dict):
                rows = [(name, _share(value)) for name, value in result.items()]
                blocks += [f"{label}:", Table(("parameter", label.lower()), rows)]
            else:
                blocks.append(f"{label}: {result}.")
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    blocks.append(
        f"fANOVA (seed {_IMPORTANCE_SEED}) over the {complete} COMPLETE trials only: pruned "
        "and failed trials are left out, so these can differ from the collapse table above. "
        "Collapse is the share of a trial's folds that collapsed. Only parameters present in "
        "every trial are assessed."
    )
    return Section("Parameter importances", blocks)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _baseline_section(
    study: optuna.Study,
    best: FrozenTrial | None,
    metric: str,
    best_run_metrics: Mapping[str, float],
) -> Section:
    baselines = {
        name: study.user_attrs[f"{BASELINE_ATTR_PREFIX}{name}"]
        for name in BASELINE_LABELS
        if isinstance(study.user_attrs.get(f"{BASELINE_ATTR_PREFIX}{name}"), dict)
    }
    if not baselines:
        return Section(
            "Baselines",
            [
                "No baselines are recorded for this study; `sweep run` scores them on the "
                "study's folds when it starts or resumes a study with trials left to run."
            ],
        )
    shown = list(dict.fromkeys([metric, *COMPARED_METRICS]))
    rows = []
    if best is not None:
        figures = {**best_run_metrics, metric: best.value}
        figures.setdefault("majority_share", best.user_attrs.get("majority_share"))
        folds = (
            f"{best.user_attrs.get('collapsed_folds', 0)}/{best.user_attrs.get('folds_run', 0)}"
        )
        figures.setdefault("accuracy", best.user_attrs.get("accuracy"))
        flag = "COLLAPSED" if _collapsed(best) else ""
        rows.append(
            (f"best trial ({best.number})", *(_metric(figures, n) for n in shown), folds, flag)
        )
    for name, summary in baselines.items():
        folds = f"{int(summary.get('collapsed_folds', 0))}/{int(summary.get('folds_run', 0))}"
        # The majority class is what a collapsed model amounts to: chance, whatever it scores.
        flag = "CHANCE" if name == "majority" else ""
        rows.append((BASELINE_LABELS[name], *(_metric(summary, n) for n in shown), folds, flag))
    blocks: list[Block] = [Table(("model", *shown, "collapsed folds", "flag"), rows)]
    if best is None:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        blocks.append(
            f"Every one of the {len(completed)} completed trials had a collapsed fold, so no "
            "trial is compared with the baselines."
            if completed
            else "No trial completed, so there is nothing to compare yet."
        )
        return Section("Baselines", blocks)
    blocks += [
        _comparison(best, baselines.get("logistic"), metric, "the logistic regression"),
        _comparison(best, baselines.get("majority"), metric, "chance (the majority class)"),
    ]
    return Section("Baselines", blocks)


def _balance_section(study: optuna.Study, metric: str) -> Section | None:
    """Warn when the classes are so unequal that accuracy rewards predicting one class."""
    majority = study.user_attrs.get(f"{BASELINE_ATTR_PREFIX}majority")
    if not isinstance(majority, dict) or "accuracy" not in majority:
        return None
    chance_accuracy = float(majority["accuracy"])
    if chance_accuracy < IMBALANCE_ACCURACY:
        return None
    collapsed = [
        trial
        for trial in study.get_trials(deepcopy=False, states=COUNTED_STATES)
        if _collapsed(trial)
    ]
    flagged = (
        "Flagged COLLAPSED, whatever their accuracy: trials "
        + ", ".join(
            f"{trial.number} (accuracy {_metric(trial.user_attrs, 'accuracy')})"
            for trial in collapsed
        )
        + "."
        if collapsed
        else "No trial collapsed."
    )
    constrained_search = (
        study.user_attrs.get("spec", {}).get("collapse", {}).get("constrain_search", False)
    )
    constrained = (
        " Collapse is a constraint of the search, so a trial with a collapsed fold is never "
        "chosen as the best while a trial that did not collapse has completed."
    )
    return Section(
        "Imbalanced classes",
        [
            f"Predicting the majority class for every row scores accuracy {chance_accuracy:.3f} "
            f"on these folds, so a model that learned nothing looks good on accuracy. The "
            f"majority-class baseline is flagged CHANCE, and trials are ranked by {metric}, on "
            "which a one-class predictor scores chance (0.5 balanced accuracy, 0 MCC, 0.5 ROC "
            "AUC) whatever the class ratio." + (constrained if constrained_search else ""),
            flagged,
        ],
    )


def _comparison(
    best: FrozenTrial, baseline: Mapping[str, float] | None, metric: str, name: str
) -> str:
    if baseline is None or metric not in baseline:
        return f"No figure for {name}, so no comparison with it."
    difference = best.value - baseline[metric]
    if difference > 0:
        return (
            f"The best transformer beats {name}: {metric} {best.value:.3f} against "
            f"{baseline[metric]:.3f} (+{difference:.3f})."
        )
    return (
        f"The best transformer does not beat {name}: {metric} {best.value:.3f} against "
        f"{baseline[metric]:.3f} ({difference:+.3f})."
    )


def _metric(figures: Mapping[str, Any], name: str) -> str:
    value = figures.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.3f}"


def _verdict(rates: list[CollapseRate], study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False, states=COUNTED_STATES)
    if not trials:
        return "Verdict: no trial has finished yet."
    driver = collapse_driver(rates)
    if driver is None:
        return f"Verdict: no trial collapsed (0/{len(trials)} trials)."
    if all(_collapsed(trial) for trial in trials):
        return (
            f"Verdict: every trial collapsed ({len(trials)}/{len(trials)}), so no parameter "
            "value stands out; look at the data, the scaling and the epochs first."
        )
    others = [rate for rate in rates if rate.parameter == driver.parameter and rate != driver]
    collapsed = sum(rate.collapsed for rate in others)
    total = sum(rate.total for rate in others)
    constant = sum(rate.constant for rate in others)
    rest = (
        f", against {collapsed}/{total} ({collapsed / total:.0%}) with any other "
        f"{driver.parameter}"
        + (f" ({constant} with a constant output)" if driver.constant else "")
        if total
        else f", the only {driver.parameter} tried"
    )
    # A tie means these trials cannot tell the values apart; say so rather than pick one.
    tied = [rate.label for rate in rates if rate != driver and rate.severity == driver.severity]
    tie = f" (tied with {', '.join(tied)})" if tied else ""
    # Values that collapsed as often but with a varying output come second to a constant one;
    # a value tried once says too little to be named here.
    as_often = [
        rate.label
        for rate in rates
        if rate != driver
        and rate.rate == driver.rate
        and rate.severity != driver.severity
        and rate.total > 1
    ]
    more = f" and {len(as_often) - 3} more" if len(as_often) > 3 else ""
    second = (
        f"; {', '.join(as_often[:3])}{more} collapsed as often, but with fewer constant outputs"
        if as_often and driver.constant
        else ""
    )
    kind = (
        f", {driver.constant} of them with a constant output (the input never reached the output)"
        if driver.constant
        else ""
    )
    return (
        f"Verdict: {driver.label} drives collapse: {driver.collapsed}/{driver.total} trials "
        f"collapsed ({driver.rate:.0%}){kind}{rest}{tie}{second}."
    )


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _text_block(block: Block) -> str:
    if isinstance(block, Table):
        widths = [
            max(len(cell) for cell in column)
            for column in zip(block.headers, *block.rows, strict=True)
        ]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

        rule = "  ".join("-" * width for width in widths)
        lines = [line(block.headers), rule, *(line(row) for row in block.rows)]
        return "\n".join(text.rstrip() for text in lines)
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    return block


def _markdown_block(block: Block) -> str:
    if isinstance(block, Table):

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        rule = "|" + "|".join(" --- " for _ in block.headers) + "|"
        return "\n".join([line(block.headers), rule, *(line(row) for row in block.rows)])
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    return block
