"""MLflow tracking: one experiment and one parent run per study, one child run per trial.

The parent run holds what is true of the whole study (the resolved spec, the data file and
its hash, the folds); each trial's child run holds its parameters, its per-fold and mean
metrics, its per-epoch losses and its final state. Runs are written through
``MlflowClient`` rather than the fluent API so that no global "active run" leaks between
trials, folds or worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from sweeps.collapse import FoldMetrics

logger = logging.getLogger(__name__)

# MLflow prints a "View run at <url>" line to stdout for every run it ends on a tracking
# server; a sweep logs its own line per trial, so those would only bury the log.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

TAG_PREFIX = "collapse_sweep."
# What a trial's final Optuna state becomes in MLflow, which has no "pruned" status: a
# pruned trial was stopped on purpose, so it is KILLED, and the tag keeps the exact state.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
# MLflow refuses more than this many metrics in one batch.
_BATCH_LIMIT = 1000


class TrackingConfigError(ValueError):
    """An unreadable or invalid tracking config; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Where runs go.

    Attributes:
        tracking_uri: The MLflow tracking URI (a database URI or an ``http://`` server).
        artifact_location: Where new experiments keep artifacts; None lets the tracking
            server decide, as it must when artifacts are proxied.
        experiment_name: A template for the experiment's name; ``{study}`` is replaced.
    """

    tracking_uri: str
    artifact_location: str | None
    experiment_name: str = "{study}"


def load_tracking_config(path: str | Path | None) -> TrackingConfig:
    """Read ``mlflow.yaml``; ``MLFLOW_TRACKING_URI`` in the environment overrides its URI.

    Relative paths in the file are taken from the file's own directory, so a sweep started
    from anywhere logs to the same store that ``mlflow ui`` opens in that directory.

    Args:
        path: The YAML file, or None for the built-in defaults (a SQLite file and an
            artifact folder in the working directory).

    Returns:
        The resolved configuration.

    Raises:
        TrackingConfigError: The file is unreadable or has unknown keys.
    """
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise TrackingConfigError(
                f"{path}: cannot read the tracking config ({error})"
            ) from None
        base = path.resolve().parent
    known = {field.name for field in dataclasses.fields(TrackingConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TrackingConfigError(
            f"{path}: unknown key '{unknown[0]}'; accepted keys: {', '.join(sorted(known))}"
        )

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or raw.get(
        "tracking_uri", "sqlite:///mlflow.db"
    )
    artifact_location = raw.get("artifact_location", "mlartifacts")
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        artifact_location = None
    elif artifact_location and "://" not in artifact_location:
        artifact_location = (base / artifact_location).resolve().as_uri()
    return TrackingConfig(
        tracking_uri=_absolute_sqlite_uri(tracking_uri, base),
        artifact_location=artifact_location,
        experiment_name=raw.get("experiment_name", "{study}"),
    )


def _absolute_sqlite_uri(uri: str, base: Path) -> str:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    return prefix + str((base / uri[len(prefix) :]).resolve())


def redact(url: str) -> str:
    """Hide the password of a URL such as ``postgresql://user:secret@host/db``.

    Args:
        url: Any URL or path.

    Returns:
        The URL with its password replaced by ``***``; anything else unchanged.
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def store_creation_lock(tracking_uri: str) -> Iterator[None]:
    """Hold a file lock beside a SQLite tracking store while a client opens it.

    Opening a SQLite store creates or upgrades its tables, and two processes doing that at
    once fail ("table latest_metrics already exists"): launchers started together, or the
    workers of one launcher, would. Other stores need no lock: a tracking server creates
    its tables once, when it starts.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        yield
        return
    database = Path(tracking_uri[len(prefix) :].split("?", 1)[0])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class StudyTracker:
    """Writes one study's runs to MLflow.

    Args:
        config: Where to write.
        study_name: The Optuna study's name; it names the experiment.
    """

    def __init__(self, config: TrackingConfig, study_name: str) -> None:
        self.config = config
        self.study_name = study_name
        with store_creation_lock(config.tracking_uri):
            self.client = mlflow.MlflowClient(tracking_uri=config.tracking_uri)
        self.experiment_id = ""
        self.parent_run_id = ""
        # Tags for every trial run this process opens, e.g. the worker and GPU it ran on.
        self.trial_tags: dict[str, str] = {}

    def start_study(
        self,
        *,
        parent_run_id: str | None,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        spec_yaml: str,
    ) -> str:
        """Create (or reopen) the study's experiment and parent run.

        Call this once, before any worker starts: several processes creating the same
        experiment at once would race.

        Args:
            parent_run_id: The parent run of an earlier invocation, to reopen, or None.
            params: Study-wide parameters for the parent run.
            tags: Study-wide tags for the parent run.
            spec_yaml: The resolved spec, saved as an artifact.

        Returns:
            The parent run's id.
        """
        self.experiment_id = self._experiment_id()
        if parent_run_id and self._run_exists(parent_run_id):
            self.client.update_run(parent_run_id, status="RUNNING")
            self.parent_run_id = parent_run_id
            logger.info("MLflow: resuming parent run %s", parent_run_id)
            return parent_run_id

        run = self.client.create_run(
            self.experiment_id,
            run_name=self.study_name,
            tags={**tags, f"{TAG_PREFIX}role": "study", f"{TAG_PREFIX}study": self.study_name},
        )
        self.parent_run_id = run.info.run_id
        self.client.log_batch(
            self.parent_run_id, params=[Param(key, str(value)) for key, value in params.items()]
        )
        self.client.log_text(self.parent_run_id, spec_yaml, "spec.resolved.yaml")
        logger.info(
            "MLflow: experiment '%s', parent run %s at %s",
            self.experiment_name,
            self.parent_run_id,
            redact(self.config.tracking_uri),
        )
        return self.parent_run_id

    def attach(self, parent_run_id: str) -> None:
        """Point at an existing study's parent run (for a worker that did not create it).

        Raises:
            TrackingConfigError: The run is not in this tracking store, which is then not
                the one the study's launcher wrote to.
        """
        try:
            run = self.client.get_run(parent_run_id)
        except MlflowException:
            raise TrackingConfigError(
                f"{redact(self.config.tracking_uri)}: no MLflow run {parent_run_id}, the "
                f"parent run of study '{self.study_name}'; point this worker at the tracking "
                "store its launcher used (MLFLOW_TRACKING_URI or --tracking-config)"
            ) from None
        self.parent_run_id = parent_run_id
        self.experiment_id = run.info.experiment_id

    def end_study(self, status: str = "FINISHED") -> None:
        """Close the parent run, so that no run is left RUNNING after the sweep."""
        if self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status=status)

    def start_trial(
        self, trial_number: int, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> TrialRun:
        """Open the child run of one trial under the study's parent run.

        Args:
            trial_number: The Optuna trial number.
            params: Every parameter the trial uses, sampled or fixed.
            tags: Extra tags (data hash and the like).

        Returns:
            The open run; call ``end`` on it whatever happens.
        """
        return self._start_child(
            f"trial-{trial_number:04d}",
            params,
            {
                **tags,
                **self.trial_tags,
                f"{TAG_PREFIX}role": "trial",
                f"{TAG_PREFIX}trial_number": str(trial_number),
                f"{TAG_PREFIX}trial_state": "RUNNING",
            },
        )

    def start_baseline(self, name: str, params: Mapping[str, Any]) -> TrialRun:
        """Open the child run of one baseline model under the study's parent run.

        Args:
            name: The baseline's name, e.g. ``majority`` or ``logistic``.
            params: What defines the baseline (its estimator and settings).

        Returns:
            The open run; set its status when the baseline is scored.
        """
        return self._start_child(
            f"baseline-{name}",
            params,
            {f"{TAG_PREFIX}role": "baseline", f"{TAG_PREFIX}baseline": name},
        )

    def _start_child(
        self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> TrialRun:
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={
                **tags,
                "mlflow.parentRunId": self.parent_run_id,
                f"{TAG_PREFIX}study": self.study_name,
            },
        )
        child = TrialRun(self.client, run.info.run_id)
        child.log(params=params)
        return child

    def finished_baselines(self) -> dict[str, Run]:
        """The baseline runs already scored under this study's parent run, by name."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
                f"AND tags.`{TAG_PREFIX}role` = 'baseline' "
                "AND attributes.status = 'FINISHED'"
            ),
        )
        return {run.data.tags[f"{TAG_PREFIX}baseline"]: run for run in runs}

    def fail_trial_runs(self, trial_number: int, run_id: str | None, reason: str) -> list[str]:
        """Close as FAILED the runs of a trial whose worker died before it could.

        Args:
            trial_number: The Optuna trial's number.
            run_id: The run the trial recorded (user attribute ``mlflow_run_id``), if any;
                a worker that died just after opening its run had no time to record it, so
                runs of this trial number under the parent run are looked up as well.
            reason: Why the trial failed, kept in the tag ``collapse_sweep.failure``.

        Returns:
            The ids of the runs that were closed; runs already closed are left as they are.
        """
        run_ids = {run_id} if run_id else set()
        if self.experiment_id and self.parent_run_id:
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string=(
                    f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
                    f"AND tags.`{TAG_PREFIX}trial_number` = '{trial_number}' "
                    "AND attributes.status = 'RUNNING'"
                ),
            )
            run_ids |= {run.info.run_id for run in runs}
        closed = []
        for each in sorted(run_ids):
            try:
                status = self.client.get_run(each).info.status
            except MlflowException:
                continue
            if status != "RUNNING":
                continue
            self.client.set_tag(each, f"{TAG_PREFIX}failure", reason)
            TrialRun(self.client, each).end("FAIL")
            closed.append(each)
        return closed

    @property
    def experiment_name(self) -> str:
        return self.config.experiment_name.format(study=self.study_name)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(
                self.experiment_name, artifact_location=self.config.artifact_location
            )
        except MlflowException:
            # Another process created it between the lookup and the creation.
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _run_exists(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active"


class TrialRun:
    """One trial's child run.

    Args:
        client: The MLflow client to write through.
        run_id: The run's id.
    """

    def __init__(self, client: mlflow.MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log(
        self,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        """Log metrics (at one step), parameters and tags in one request."""
        now = int(time.time() * 1000)
        self._log_batch(
            [Metric(key, float(value), now, step) for key, value in (metrics or {}).items()],
            params=[Param(key, str(value)) for key, value in (params or {}).items()],
            tags=[RunTag(key, str(value)) for key, value in (tags or {}).items()],
        )

    def log_fold(
        self,
        fold: int,
        metrics: FoldMetrics,
        history: Mapping[str, Iterable[float]],
        *,
        seconds: float,
    ) -> None:
        """Log one fold's metrics and its per-epoch training curves.

        Per-fold metrics are logged under ``fold/<metric>`` with the fold as the step, so
        the MLflow UI plots them across folds; the curves go under ``<curve>/fold_<k>`` with
        the epoch as the step.

        Args:
            fold: The fold's index.
            metrics: The fold's validation metrics.
            history: Keras' history: per-epoch values by name (``loss``, ``val_loss``).
            seconds: The fold's wall time, logged with its epoch count to compare speeds.
        """
        now = int(time.time() * 1000)
        epochs = len(next(iter(history.values()), []))
        values = {**metrics.as_dict(), "seconds": seconds, "epochs": epochs}
        entries = [Metric(f"fold/{key}", value, now, fold) for key, value in values.items()]
        for name, values in history.items():
            entries += [
                Metric(f"{name}/fold_{fold}", float(value), now, epoch)
                for epoch, value in enumerate(values)
            ]
        self._log_batch(entries)

    def end(self, state: str) -> None:
        """Close the run with the status that matches the trial's final Optuna state.

        Args:
            state: ``COMPLETE``, ``PRUNED`` or ``FAIL``.
        """
        self.client.set_tag(self.run_id, f"{TAG_PREFIX}trial_state", state)
        self.client.set_terminated(self.run_id, status=RUN_STATUS[state])

    def _log_batch(
        self,
        metrics: list[Metric],
        params: list[Param] | None = None,
        tags: list[RunTag] | None = None,
    ) -> None:
        self.client.log_batch(self.run_id, metrics[:_BATCH_LIMIT], params or [], tags or [])
        for start in range(_BATCH_LIMIT, len(metrics), _BATCH_LIMIT):
            self.client.log_batch(self.run_id, metrics[start : start + _BATCH_LIMIT])
