"""What a user sees of a finished study in a real browser: the MLflow UI and optuna-dashboard.

A small study is run with the `sweep run` command, both web apps are started on its stores
as real servers, and headless Chromium checks that the study, its trials and their collapse
summaries are on the pages, with the values the stores hold. A picture of every page checked
is saved (see ``tests/sweeps/browser.py`` for where).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from selenium.webdriver.common.by import By

from data.demo import write_demo
from sweeps.study import PARENT_RUN_ATTR, open_storage
from tests.sweeps.browser import (
    CHROMIUM,
    Pages,
    chromium,
    free_port,
    require_browser,
    screenshot_dir,
    serving,
)
from tests.sweeps.conftest import run_args

_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")

pytestmark = [
    pytest.mark.slow,
    # In CI a missing browser is a broken set-up, so there the test fails instead.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not _IN_CI,
        reason=f"{CHROMIUM} is absent; install it with `apt-get install -y chromium "
        "chromium-driver` to see the study in a browser",
    ),
]

# Two trials of two folds and one epoch: seconds of training. Seed 0 samples `patch` and
# then `token`; `token` on these unscaled values (all below 1) casts every value to id 0,
# so every row looks the same to the model and its trial collapses whatever the weights.
SPEC = {
    "name": "browser",
    "seed": 0,
    "budget": {"trials": 2},
    "cv": {"folds": 2},
    "training": {"max_epochs": 1, "early_stopping_patience": 1},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
    "search": {"embedding": ["token", "patch"]},
    "fixed": {
        "patch_length": 8,
        "scaling": "none",
        "width": 8,
        "num_heads": 2,
        "depth": 1,
        "batch_size": 32,
        "learning_rate": 0.003,
    },
}
COLLAPSE_METRICS = ("collapsed_folds", "majority_share", "probability_std")


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial as the stores hold it: what its pages must show."""

    number: int
    run_id: str
    run_name: str
    collapsed_folds: int
    collapse: str
    metrics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class FinishedStudy:
    """A study that `sweep run` finished, and where its stores are."""

    name: str
    storage: Path
    mlflow_uri: str
    study_id: int
    experiment_id: str
    parent_run_id: str
    trials: list[TrialRecord]

    @property
    def collapsed_trial(self) -> TrialRecord:
        return next(trial for trial in self.trials if trial.collapsed_folds > 0)


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    # Before the minute of training, so that a machine without the browser fails at once.
    require_browser()


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> FinishedStudy:
    """A study of two trials run by `sweep run` into stores of its own."""
    folder = tmp_path_factory.mktemp("browser-study")
    data = write_demo(folder / "small.xlsx", num_rows=40, num_values=32, seed=1)
    spec = folder / "browser.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    stores = {"storage": folder / "journal.log", "config": folder / "mlflow.yaml"}
    stores["config"].write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: artifacts\n"
    )

    # The console script a user runs, in a process of its own, as `make sweep` does.
    sweep = Path(sys.executable).with_name("sweep")
    log = folder / "sweep.log"
    with log.open("wb") as output:
        finished = subprocess.run(
            [str(sweep), *run_args(spec, data, stores)],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    log_end = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    assert finished.returncode == 0, f"`sweep run` exited {finished.returncode}:\n{log_end}"

    name = "browser-small"
    optuna_storage = open_storage(str(stores["storage"]))
    study = optuna.load_study(study_name=name, storage=optuna_storage)
    # A collapsed trial may end pruned; either way it is finished and has its summary.
    states = [trial.state for trial in study.trials]
    assert len(states) == 2, log_end
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, (states, log_end)

    mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment '{name}':\n{log_end}"
    runs = client.search_runs([experiment.experiment_id])
    by_number = {
        int(run.data.tags["collapse_sweep.trial_number"]): run
        for run in runs
        if run.data.tags.get("collapse_sweep.role") == "trial"
    }
    trials = [
        TrialRecord(
            number=trial.number,
            run_id=by_number[trial.number].info.run_id,
            run_name=by_number[trial.number].info.run_name,
            collapsed_folds=trial.user_attrs["collapsed_folds"],
            collapse=trial.user_attrs["collapse"],
            metrics=by_number[trial.number].data.metrics,
        )
        for trial in study.trials
    ]
    # The pages must show a collapse, not only its absence (the `token` trial above).
    assert any(trial.collapsed_folds > 0 for trial in trials), [t.collapse for t in trials]
    return FinishedStudy(
        name=name,
        storage=stores["storage"],
        mlflow_uri=mlflow_uri,
        study_id=optuna_storage.get_study_id_from_name(name),
        experiment_id=experiment.experiment_id,
        parent_run_id=study.user_attrs[PARENT_RUN_ATTR],
        trials=trials,
    )


@pytest.fixture(scope="module")
def servers(finished_study, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The MLflow UI and optuna-dashboard on the study's stores, by name, as base URLs."""
    bin_dir = Path(sys.executable).parent
    mlflow_port, dashboard_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    mlflow_ui = [
        str(bin_dir / "mlflow"),
        "ui",
        "--backend-store-uri",
        finished_study.mlflow_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(mlflow_port),
        # One worker instead of four: the pages are the same, the start is seconds faster.
        "--workers",
        "1",
    ]
    dashboard = [
        str(bin_dir / "optuna-dashboard"),
        str(finished_study.storage),
        "--host",
        "127.0.0.1",
        "--port",
        str(dashboard_port),
    ]
    commands = {
        "mlflow-ui": (mlflow_ui, f"{mlflow_url}/health"),
        "optuna-dashboard": (dashboard, f"{dashboard_url}/api/studies"),
    }
    with serving(commands, tmp_path_factory.mktemp("server-logs")):
        yield {"mlflow": mlflow_url, "dashboard": dashboard_url}


@pytest.fixture(scope="module")
def pages(servers, tmp_path_factory) -> Iterator[Pages]:
    """Headless Chromium for the study's pages.

    It opens once the servers answer and closes before they stop, since its open
    connections would hold up their graceful shutdown.
    """
    folder = tmp_path_factory.mktemp("chromium")
    with chromium(folder / "profile", folder / "chromedriver.log") as driver:
        yield Pages(driver, screenshot_dir())


def _link(href: str, text: str):
    """The link to ``href`` that reads ``text``, once the app has rendered it."""

    def find(driver):
        links = driver.find_elements(By.CSS_SELECTOR, f'a[href="{href}"]')
        return next((link for link in links if link.text.strip() == text), None)

    return find


def _lines(pages: Pages) -> list[str]:
    return [line.strip() for line in pages.visible_text().splitlines()]


def test_mlflow_ui_lists_the_study_experiment(pages, servers, finished_study):
    pages.open(f"{servers['mlflow']}/#/experiments")

    pages.wait_for(
        f"a link to the experiment '{finished_study.name}'",
        "mlflow-experiments",
        _link(f"#/experiments/{finished_study.experiment_id}", finished_study.name),
    )
    pages.screenshot("mlflow-experiments")


def test_mlflow_ui_lists_trial_runs_under_the_study_run(pages, servers, finished_study):
    experiment = f"#/experiments/{finished_study.experiment_id}"
    # The experiment page opens on GenAI traces; the runs table lives under "Model training".
    pages.open(f"{servers['mlflow']}/{experiment}/runs?workflowType=machine_learning")

    parent = pages.wait_for(
        f"the study's parent run '{finished_study.name}'",
        "mlflow-runs",
        _link(f"{experiment}/runs/{finished_study.parent_run_id}", finished_study.name),
    )
    # Trial runs are nested under the study's run, folded until the user opens it.
    parent.find_element(By.XPATH, "./ancestor::*[@role='gridcell'][1]//button").click()
    links = {
        trial.number: pages.wait_for(
            f"the trial run '{trial.run_name}' under the study's run",
            "mlflow-runs",
            _link(f"{experiment}/runs/{trial.run_id}", trial.run_name),
        )
        for trial in finished_study.trials
    }
    assert sorted(trial.run_name for trial in finished_study.trials) == [
        "trial-0000",
        "trial-0001",
    ]
    pages.screenshot("mlflow-runs")

    collapsed = finished_study.collapsed_trial
    links[collapsed.number].click()
    pages.wait_for(
        f"the page of run '{collapsed.run_name}'",
        "mlflow-runs",
        lambda driver: (
            driver.current_url.endswith(f"/runs/{collapsed.run_id}")
            and collapsed.run_name in _lines(pages)
        ),
    )


def test_mlflow_ui_run_page_shows_collapse_metrics(pages, servers, finished_study):
    for trial in finished_study.trials:
        page = f"mlflow-run-{trial.run_name}"
        pages.open(
            f"{servers['mlflow']}/#/experiments/{finished_study.experiment_id}"
            f"/runs/{trial.run_id}?workflowType=machine_learning"
        )

        for name in COLLAPSE_METRICS:
            # A row of the run's metrics table: the metric's name, then its value.
            row = (
                f"//*[@role='row'][./*[@role='cell'][1][normalize-space()='{name}']]"
                "/*[@role='cell'][2]"
            )
            value = pages.wait_for(
                f"metric {name} of run '{trial.run_name}'",
                page,
                lambda driver, row=row: driver.find_element(By.XPATH, row),
            )
            assert float(value.text) == pytest.approx(trial.metrics[name], rel=1e-6), name
            if name == "collapsed_folds":
                collapsed_folds = value
        assert trial.metrics["collapsed_folds"] == trial.collapsed_folds

        # The one-sentence explanation is the run's collapse tag.
        tag = pages.wait_for(
            f"the collapse tag of run '{trial.run_name}'",
            page,
            lambda driver: driver.find_element(By.XPATH, "//*[@title='collapse_sweep.collapse']"),
        )
        assert trial.collapse in tag.text
        pages.driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'})", collapsed_folds
        )
        pages.screenshot(page)


def test_dashboard_lists_the_study_and_its_trials(pages, servers, finished_study):
    study_path = f"/dashboard/studies/{finished_study.study_id}"
    pages.open(f"{servers['dashboard']}/dashboard")

    # The study list names each study after its id: "0. browser-small".
    link = pages.wait_for(
        f"the study '{finished_study.name}' in the list",
        "dashboard-studies",
        lambda driver: next(
            (
                link
                for link in driver.find_elements(By.CSS_SELECTOR, "a[href]")
                if link.get_attribute("href").endswith(study_path)
                and finished_study.name in link.text
            ),
            None,
        ),
    )
    pages.screenshot("dashboard-studies")
    link.click()
    pages.wait_for(
        f"the study page of '{finished_study.name}'",
        "dashboard-study",
        lambda driver: (
            driver.current_url.endswith(study_path)
            and "Study User Attributes" in _lines(pages)
            and any(finished_study.name in line for line in _lines(pages))
        ),
    )
    pages.screenshot("dashboard-study")

    pages.open(f"{servers['dashboard']}{study_path}/trials")
    expected = [f"Trial {trial.number}" for trial in finished_study.trials]
    pages.wait_for(
        f"the trials {', '.join(expected)} listed",
        "dashboard-trials",
        lambda driver: all(label in _lines(pages) for label in expected),
    )
    pages.screenshot("dashboard-trials")


def test_dashboard_trial_page_shows_collapse_summary(pages, servers, finished_study):
    study_path = f"/dashboard/studies/{finished_study.study_id}"
    for trial in finished_study.trials:
        page = f"dashboard-trial-{trial.number}"
        pages.open(f"{servers['dashboard']}{study_path}/trials?numbers={trial.number}")

        # User attributes read "key value", one to a line.
        expected = [
            f"collapsed_folds {trial.collapsed_folds}",
            f"collapse {trial.collapse}",
            f"mlflow_run_id {trial.run_id}",
        ]
        # The trial's heading reads "Trial 1 (trial_id=1)".
        heading = f"Trial {trial.number} ("

        def shown(driver, expected=expected, heading=heading) -> bool:
            lines = _lines(pages)
            return all(line in lines for line in expected) and any(
                line.startswith(heading) for line in lines
            )

        pages.wait_for(
            f"trial {trial.number}'s collapse summary ({'; '.join(expected)})", page, shown
        )
        pages.screenshot(page)
