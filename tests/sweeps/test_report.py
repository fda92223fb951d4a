from pathlib import Path

import mlflow
import optuna
import pytest
from optuna_dashboard._note import get_note

from data import read_dataset, stratified_folds
from data.demo import write_demo
from sweeps.baselines import log_baselines
from sweeps.cli import EXIT_BAD_INPUT, main
from sweeps.report import (
    REPORT_ARTIFACT,
    build_report,
    collapse_driver,
    collapse_rates,
    collapse_share,
    importances,
)
from sweeps.spec import parse_spec
from sweeps.study import PARENT_RUN_ATTR, load_or_create_study, open_storage
from sweeps.tracking import StudyTracker, load_tracking_config

SPEC_TEXT = """\
name: rep
cv: {folds: 2}
search:
  embedding: [token, patch]
  scaling: [none, standard]
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
"""
SPEC = parse_spec(
    {
        "name": "rep",
        "cv": {"folds": 2},
        "search": {
            "embedding": ["token", "patch"],
            "scaling": ["none", "standard"],
            "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        },
    }
)
# Four token trials, all collapsed; four patch trials that learn; a patch trial pruned.
TRIALS = [
    ("token", "none", 1e-3),
    ("patch", "none", 1.5e-3),
    ("patch", "standard", 2e-3),
    ("token", "standard", 3e-3),
    ("patch", "none", 4e-3),
    ("token", "none", 5e-3),
    ("patch", "standard", 6e-3),
    ("token", "standard", 8e-3),
    ("patch", "none", 9e-3),
]
PRUNED_FROM_LEARNING_RATE = 8.5e-3


def _folds(dataset):
    """The folds `sweep run` scores both the baselines and every trial on."""
    return stratified_folds(dataset.labels, SPEC.cv.folds, SPEC.seed)


def _fake_objective(tracker):
    """Sets the user attributes the real objective sets, with no model trained."""

    def objective(trial):
        embedding = trial.suggest_categorical("embedding", ["token", "patch"])
        trial.suggest_categorical("scaling", ["none", "standard"])
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        run = tracker.start_trial(trial.number, trial.params, {})
        trial.set_user_attr("mlflow_run_id", run.run_id)
        collapsed = embedding == "token"
        value = 0.5 if collapsed else 0.8 + learning_rate
        trial.set_user_attr("collapsed_folds", 2 if collapsed else 0)
        trial.set_user_attr("folds_run", 2)
        trial.set_user_attr("majority_share", 1.0 if collapsed else 0.55)
        trial.set_user_attr("accuracy", 0.75 if collapsed else value)
        trial.set_constraint("collapse", 1.0 if collapsed else 0.0)
        trial.set_user_attr(
            "collapse", "collapsed in 2 of 2 folds" if collapsed else "no collapse"
        )
        run.log(metrics={"balanced_accuracy": value, "roc_auc": 0.5 if collapsed else 0.9})
        if learning_rate > PRUNED_FROM_LEARNING_RATE:
            trial.report(value, step=0)
            run.end("PRUNED")
            raise optuna.TrialPruned()
        run.end("COMPLETE")
        return value

    return objective


def _make_study(storage, study_name, tracking, trials=TRIALS, *, baselines_from=None):
    study = load_or_create_study(open_storage(str(storage)), study_name, SPEC)
    tracker = StudyTracker(tracking, study_name)
    parent = tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="name: rep\n")
    study.set_user_attr(PARENT_RUN_ATTR, parent)
    study.set_user_attr("spec", SPEC.resolved())
    study.set_user_attr("data_file", "small.xlsx")
    if baselines_from is not None:
        dataset = read_dataset(baselines_from)
        log_baselines(study, tracker, SPEC, dataset, folds=_folds(dataset))
    for embedding, scaling, learning_rate in trials:
        study.enqueue_trial(
            {"embedding": embedding, "scaling": scaling, "learning_rate": learning_rate}
        )
    study.optimize(_fake_objective(tracker), n_trials=len(trials))
    tracker.end_study()
    return study


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "rep.yaml"
    path.write_text(SPEC_TEXT)
    return path


@pytest.fixture
def tracking(stores):
    return load_tracking_config(stores["config"])


@pytest.fixture
def study(stores, tracking, small_data):
    return _make_study(stores["storage"], "rep-small", tracking, baselines_from=small_data)


def _report_args(stores, *extra):
    return [
        "report",
        "--storage",
        str(stores["storage"]),
        "--tracking-config",
        str(stores["config"]),
        *extra,
    ]


def test_main_report_prints_writes_and_logs_the_report(
    study, stores, tracking, spec_path, small_data, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = _report_args(stores, "--spec", str(spec_path), "--data", str(small_data))
    assert main(argv) == 0

    text = capsys.readouterr().out
    assert "embedding=token: 4/4 trials collapsed (100%)" in text
    assert "embedding=patch: 0/5 trials collapsed (0%)" in text
    assert "scaling=none: 2/5 trials collapsed" in text
    assert "learning_rate in [" in text
    assert (
        "Verdict: embedding=token drives collapse: 4/4 trials collapsed (100%), against "
        "0/5 (0%) with any other embedding." in text
    )
    for heading in ("Best trials", "Collapse by parameter", "Parameter importances"):
        assert heading in text
    assert "over the 8 COMPLETE trials only" in text
    # The best trial is the complete patch trial with the highest learning rate.
    best_row = text.split("Best trials")[1].splitlines()[4]
    assert best_row.split()[:5] == ["6", "0.806", "0/2", "COMPLETE", "patch"]
    assert "logistic regression" in text
    assert "majority class" in text
    assert "beats chance (the majority class): balanced_accuracy 0.806 against 0.500" in text

    markdown = (tmp_path / "reports" / "rep-small.md").read_text()
    assert markdown.startswith("# Study report: rep-small")
    assert "- embedding=token: 4/4 trials collapsed (100%)" in markdown
    assert "| embedding |" in markdown
    assert "**Verdict: embedding=token drives collapse" in markdown

    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri)
    parent = study.user_attrs[PARENT_RUN_ATTR]
    assert REPORT_ARTIFACT in [artifact.path for artifact in client.list_artifacts(parent)]
    logged = client.download_artifacts(parent, REPORT_ARTIFACT, str(tmp_path))
    assert Path(logged).read_text(encoding="utf-8") == markdown
    rates = client.get_run(parent).data.metrics
    assert rates["collapse_rate/embedding/token"] == 1.0
    assert rates["collapse_rate/embedding/patch"] == 0.0
    assert rates["collapse_rate/scaling/none"] == pytest.approx(2 / 5)
    assert not [name for name in rates if name.startswith("collapse_rate/learning_rate")]

    reloaded = optuna.load_study(
        study_name="rep-small", storage=open_storage(str(stores["storage"]))
    )
    assert get_note(reloaded) == markdown


def test_main_report_best_trial_metrics_come_from_its_run(study, stores, tmp_path, capsys):
    out = tmp_path / "out" / "report.md"
    assert main(_report_args(stores, "--study", "rep-small", "--out", str(out), "--top", "2")) == 0

    baselines = capsys.readouterr().out.split("Baselines")[1]
    best_row = next(line for line in baselines.splitlines() if line.startswith("best trial"))
    # balanced_accuracy, accuracy (from Optuna), roc_auc (from MLflow), mcc (not logged),
    # majority_share, folds; no flag
    assert best_row.split()[3:] == ["0.806", "0.806", "0.900", "—", "0.550", "0/2"]
    markdown = out.read_text()
    best_trials = markdown.split("## Best trials")[1].split("##")[0]
    assert len([line for line in best_trials.splitlines() if line[2:3].isdigit()]) == 2


def test_main_report_unknown_study_exits_2_and_lists_the_studies(study, stores, caplog, capsys):
    assert main(_report_args(stores, "--study", "nope")) == EXIT_BAD_INPUT

    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert "no study named 'nope'" in errors[0]
    assert "studies there: rep-small" in errors[0]
    assert capsys.readouterr().out == ""


def test_main_report_missing_storage_exits_2_and_creates_nothing(tmp_path, stores, caplog):
    storage = tmp_path / "absent.log"
    argv = ["report", "--storage", str(storage), "--study", "rep-small"]
    assert main(argv) == EXIT_BAD_INPUT
    assert "absent.log: no such study storage" in caplog.text
    assert not storage.exists()


def test_build_report_small_study_says_not_enough_trials(stores, tracking):
    study = _make_study(stores["storage"], "tiny", tracking, TRIALS[:2])

    report = build_report(study)
    text = report.text()
    assert "Objective: not enough trials: 2 complete, at least 4 needed." in text
    assert "Collapse: not enough trials" in text
    assert "No baselines are recorded for this study" in text
    # One token trial and one patch trial: the token trial's learning rate collapses as often.
    assert (
        "Verdict: embedding=token drives collapse: 1/1 trials collapsed (100%), against 0/1 "
        "(0%) with any other embedding (tied with learning_rate=0.001)." in text
    )


def test_importances_single_valued_parameter_and_constant_target(stores, tracking):
    patch_only = [("patch", "none", rate) for rate in (1e-3, 2e-3, 3e-3, 4e-3, 5e-3)]
    study = _make_study(stores["storage"], "patch-only", tracking, patch_only)

    assert importances(study, target=collapse_share).startswith("not enough variation")
    objective = importances(study)
    assert isinstance(objective, dict)
    assert objective["learning_rate"] == pytest.approx(1.0)
    assert objective["embedding"] == 0.0
    assert "Verdict: no trial collapsed (0/5 trials)." in build_report(study).text()


def test_collapse_rates_bins_floats_and_names_the_driver(stores, tracking):
    study = _make_study(stores["storage"], "rates", tracking)

    rates = collapse_rates(study)
    by_parameter = {}
    for rate in rates:
        by_parameter.setdefault(rate.parameter, []).append(rate)
    assert list(by_parameter) == ["embedding", "scaling", "learning_rate"]
    learning_rates = by_parameter["learning_rate"]
    assert all(rate.binned and rate.value.startswith("[") for rate in learning_rates)
    assert sum(rate.total for rate in learning_rates) == len(TRIALS)
    assert sum(rate.value.endswith("]") for rate in learning_rates) == 1  # the last range
    driver = collapse_driver(rates)
    assert (driver.label, driver.collapsed, driver.total) == ("embedding=token", 4, 4)


def test_build_parser_report_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in ("--study", "--spec", "--data", "--storage", "--tracking-config", "--out"):
        assert option in text
    assert "--top" in text


def test_collapse_rates_tallies_every_trial_of_a_run_study(tmp_path):
    from sweeps.runner import run_until_budget

    def objective(trial):
        embedding = trial.suggest_categorical("embedding", ["token", "patch"])
        trial.set_user_attr("collapsed_folds", 2 if embedding == "token" else 0)
        trial.set_user_attr("folds_run", 2)
        return 0.5 if embedding == "token" else 0.9

    spec = parse_spec({"name": "t", "search": {"embedding": ["token", "patch"]}})
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", spec)
    run_until_budget(study, objective, 6, metric="balanced_accuracy")
    lines = [rate.describe() for rate in collapse_rates(study) if rate.parameter == "embedding"]
    tokens = sum(t.params["embedding"] == "token" for t in study.trials)
    assert f"embedding=token: {tokens}/{tokens} trials collapsed (100%)" in lines
    assert f"embedding=patch: 0/{6 - tokens} trials collapsed (0%)" in lines


def test_build_report_flags_chance_and_collapse_on_imbalanced_data(stores, tracking, tmp_path):
    # One row in four is positive: predicting class 0 everywhere scores accuracy 0.75.
    data = write_demo(
        tmp_path / "imbalanced.xlsx", num_rows=80, num_values=32, positive_share=0.25
    )
    study = _make_study(stores["storage"], "rep-imbalanced", tracking, baselines_from=data)

    report = build_report(study)
    text = report.text()
    assert "Imbalanced classes" in text
    assert "scores accuracy 0.750 on these folds" in text
    token_trials = [t.number for t in study.trials if t.params["embedding"] == "token"]
    for number in token_trials:
        assert f"{number} (accuracy 0.750)" in text
    baselines = next(s for s in report.sections if s.title == "Baselines").blocks[0]
    flags = {row[0]: row[-1] for row in baselines.rows}
    assert flags["majority class"] == "CHANCE"
    assert flags["logistic regression"] == ""
    best = next(s for s in report.sections if s.title == "Best trials").blocks[0]
    assert best.rows[0][4] == ""  # the best trial did not collapse
    assert {row[4] for row in best.rows if int(row[0]) in token_trials} <= {"COLLAPSED"}


def test_build_report_balanced_data_has_no_imbalance_warning(study):
    text = build_report(study).text()
    assert "Imbalanced classes" not in text
    assert "CHANCE" in text  # the majority baseline is chance on any data


def test_build_report_when_every_trial_collapsed_names_no_driver(stores, tracking, small_data):
    trials = [("token", "none", 1e-3), ("token", "standard", 2e-3), ("token", "none", 3e-3)]
    study = _make_study(stores["storage"], "rep-dead", tracking, trials, baselines_from=small_data)
    text = build_report(study).text()
    assert "Verdict: every trial collapsed (3/3), so no parameter value stands out" in text
    assert "Every one of the 3 completed trials had a collapsed fold" in text


def test_verdict_prefers_the_value_whose_trials_gave_a_constant_output():
    study = optuna.create_study(direction="maximize")
    distributions = {
        "embedding": optuna.distributions.CategoricalDistribution(["token", "patch"]),
        "pooling": optuna.distributions.CategoricalDistribution(["avg", "cls"]),
    }
    # token collapses with a constant output; cls collapses as often, once with a varying one.
    for embedding, pooling, collapsed, constant in [
        ("token", "avg", 2, 2),
        ("token", "cls", 1, 1),
        ("patch", "cls", 1, 0),
        ("patch", "avg", 0, 0),
    ]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"embedding": embedding, "pooling": pooling},
                distributions=distributions,
                value=0.9 if not collapsed else 0.5,
                user_attrs={"collapsed_folds": collapsed, "constant_folds": constant},
            )
        )

    rates = {rate.label: rate for rate in collapse_rates(study)}
    assert rates["embedding=token"].describe() == (
        "embedding=token: 2/2 trials collapsed (100%), 2 with a constant output"
    )
    assert rates["pooling=cls"].describe() == (
        "pooling=cls: 2/2 trials collapsed (100%), 1 with a constant output"
    )
    assert collapse_driver(list(rates.values())).label == "embedding=token"
    assert build_report(study).verdict == (
        "Verdict: embedding=token drives collapse: 2/2 trials collapsed (100%), 2 of them "
        "with a constant output (the input never reached the output), against 1/2 (50%) "
        "with any other embedding (0 with a constant output); pooling=cls collapsed as "
        "often, but with fewer constant outputs."
    )
