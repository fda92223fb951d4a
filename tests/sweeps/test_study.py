import optuna
import pytest
from optuna.trial import TrialState

from sweeps.runner import SweepError, run_until_budget
from sweeps.spec import parse_spec
from sweeps.study import load_or_create_study, open_storage, trials_counted

SPEC = parse_spec({"name": "t", "search": {"embedding": ["token", "patch"]}})


@pytest.fixture(params=["journal", "sqlite"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return str(tmp_path / "journal.log")
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _objective(trial):
    embedding = trial.suggest_categorical("embedding", ["token", "patch"])
    trial.set_user_attr("collapsed_folds", 2 if embedding == "token" else 0)
    trial.set_user_attr("folds_run", 2)
    return 0.5 if embedding == "token" else 0.9


def test_run_until_budget_resumed_study_adds_no_trial(storage_url):
    study = load_or_create_study(open_storage(storage_url), "s", SPEC)
    assert run_until_budget(study, _objective, 5, metric="balanced_accuracy") == 5

    reopened = load_or_create_study(open_storage(storage_url), "s", SPEC)
    assert run_until_budget(reopened, _objective, 5, metric="balanced_accuracy") == 0
    assert trials_counted(reopened) == 5

    # A larger budget adds only the difference.
    assert run_until_budget(reopened, _objective, 7, metric="balanced_accuracy") == 2
    assert len(reopened.trials) == 7


def test_run_until_budget_failed_trials_are_retried(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", SPEC)
    calls = []

    def flaky(trial):
        calls.append(trial.number)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return _objective(trial)

    run_until_budget(study, flaky, 3, metric="balanced_accuracy")
    states = [trial.state for trial in study.trials]
    assert states.count(TrialState.COMPLETE) == 3
    assert states.count(TrialState.FAIL) == 1


def test_run_until_budget_stops_when_every_trial_fails(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", SPEC)

    def broken(trial):
        raise RuntimeError("broken")

    with pytest.raises(SweepError, match="3 trials in a row failed"):
        run_until_budget(study, broken, 10, metric="balanced_accuracy")
    assert len(study.trials) == 3


def test_load_or_create_study_same_name_shares_trials(storage_url):
    first = load_or_create_study(open_storage(storage_url), "shared", SPEC)
    first.optimize(_objective, n_trials=2)
    second = load_or_create_study(open_storage(storage_url), "shared", SPEC, worker=1)
    assert len(second.trials) == 2
    assert second.direction == optuna.study.StudyDirection.MAXIMIZE
