"""The sweep spec: a YAML file loaded into typed, validated objects.

A spec says which model parameters are searched and over what, which are fixed, how each
trial is scored (folds, metric, epochs, early stopping), when a fold counts as collapsed,
and which sampler, pruner and trial budget the study uses. Everything is checked before
any trial starts; a mistake is reported with the file, the key, what was found and what
would be accepted.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

# These names mirror models.EMBEDDINGS / models.POOLINGS and data.SCALINGS; a test keeps
# them equal. They are spelled out here so that loading a spec never imports Keras.
EMBEDDINGS = ("token", "linear", "feature", "periodic", "ple", "patch", "conv")
POOLINGS = ("avg", "max", "cls", "attention", "flatten")
SCALINGS = ("none", "standard", "minmax", "robust", "per-sample")
METRICS = ("balanced_accuracy", "roc_auc", "mcc")
# Parameters of training rather than of the architecture; the only ones the user's posted
# model (whose layers are fixed) takes.
TRAINING_PARAMETERS = ("scaling", "learning_rate", "batch_size")


class SpecError(ValueError):
    """A sweep spec that cannot be run; the message names the file, the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One model or training parameter that a spec may search or fix.

    Attributes:
        kind: The Python type of its values.
        accepted: What values are accepted, in words, for error messages.
        default: The value used when the spec neither searches nor fixes it.
        check: Whether one value is acceptable.
        belongs_to: ``(parameter, value)`` when the parameter only means something for
            one choice of another parameter; it is then sampled and logged only with it.
    """

    kind: type
    accepted: str
    default: Any
    check: Callable[[Any], bool]
    belongs_to: tuple[str, Any] | None = None


def _choice(names: Iterable[str], default: str) -> Parameter:
    names = tuple(names)
    return Parameter(str, "one of " + ", ".join(names), default, lambda value: value in names)


# Parents come before the parameters that belong to them: suggestion follows this order.
PARAMETERS: dict[str, Parameter] = {
    "embedding": _choice(EMBEDDINGS, "linear"),
    "patch_length": Parameter(
        int, "an integer >= 1", 16, lambda v: v >= 1, belongs_to=("embedding", "patch")
    ),
    # None: patches side by side (stride = patch_length).
    "patch_stride": Parameter(
        int, "an integer >= 1", None, lambda v: v >= 1, belongs_to=("embedding", "patch")
    ),
    "periodic_sigma": Parameter(
        float, "a number > 0", 1.0, lambda v: v > 0, belongs_to=("embedding", "periodic")
    ),
    "periodic_frequencies": Parameter(
        int, "an integer >= 1", 16, lambda v: v >= 1, belongs_to=("embedding", "periodic")
    ),
    "ple_bins": Parameter(
        int, "an integer >= 2", 8, lambda v: v >= 2, belongs_to=("embedding", "ple")
    ),
    "conv_kernel_size": Parameter(
        int, "an integer >= 1", 7, lambda v: v >= 1, belongs_to=("embedding", "conv")
    ),
    "conv_stride": Parameter(
        int, "an integer >= 1", 4, lambda v: v >= 1, belongs_to=("embedding", "conv")
    ),
    "scaling": _choice(SCALINGS, "standard"),
    "learning_rate": Parameter(float, "a number in (0, 1]", 1e-3, lambda v: 0 < v <= 1),
    "depth": Parameter(int, "an integer >= 1", 2, lambda v: v >= 1),
    "pooling": _choice(POOLINGS, "avg"),
    "width": Parameter(int, "an integer >= 2", 32, lambda v: v >= 2),
    "num_heads": Parameter(int, "an integer >= 1", 2, lambda v: v >= 1),
    "ff_multiplier": Parameter(float, "a number > 0", 2.0, lambda v: v > 0),
    "dropout_rate": Parameter(float, "a number in [0, 1)", 0.1, lambda v: 0 <= v < 1),
    "norm_first": Parameter(bool, "true or false", False, lambda v: isinstance(v, bool)),
    "batch_size": Parameter(int, "an integer >= 1", 32, lambda v: v >= 1),
}


class _Section(BaseModel):
    # Unknown keys are refused so that a misspelt key never silently falls back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Section):
    """How the data file is laid out."""

    label_column: int = Field(0, ge=0)
    header_row: bool = False
    sheet: int | str = 0


class BudgetSection(_Section):
    """How many trials the study runs in all, across every invocation."""

    trials: int = Field(16, ge=1)


class CrossValidationSection(_Section):
    """How each trial is scored."""

    folds: int = Field(5, ge=2, le=20)
    metric: Literal["balanced_accuracy", "roc_auc", "mcc"] = "balanced_accuracy"


class TrainingSection(_Section):
    """How each fold's model is trained."""

    max_epochs: int = Field(30, ge=1)
    # None trains every epoch with no early stopping, as the user's posted script does.
    early_stopping_patience: int | None = Field(5, ge=1)
    early_stopping_min_delta: float = Field(1e-3, ge=0)
    early_stopping_fraction: float = Field(0.15, gt=0, le=0.5)


class CollapseSection(_Section):
    """When a validation fold's predictions count as collapsed onto one class."""

    max_majority_share: float = Field(0.95, gt=0.5, le=1.0)
    min_probability_std: float = Field(1e-3, ge=0)
    # The held-out fold is scored after every epoch; a fold still collapsed this many epochs
    # in a row after the warm-up stops, and its trial ends pruned as collapsed. None only
    # records the per-epoch metrics. Models often predict one class for their first epochs
    # and then learn (on the demo data, a patch model on unscaled values did for 7 epochs
    # before reaching 0.86 balanced accuracy), so the defaults wait before they judge.
    prune_after_epochs: int | None = Field(5, ge=1)
    warmup_epochs: int = Field(5, ge=0)
    # Each trial's share of collapsed folds goes to the sampler as a constraint, so that a
    # collapsed trial is never called the best and TPE ranks it below every trial that did
    # not collapse. How far that steers the search away from collapse is measured by
    # bench/constraint.py (a small gain on the demo data; see the README's Benchmarks).
    constrain_search: bool = True


class SamplerSection(_Section):
    """Which Optuna sampler proposes trials."""

    # grid tries every combination of the searched choices, for small comparisons.
    name: Literal["tpe", "random", "grid"] = "tpe"
    startup_trials: int = Field(8, ge=0)


class PrunerSection(_Section):
    """Which Optuna pruner may stop a weak trial between folds."""

    name: Literal["median", "none"] = "median"
    startup_trials: int = Field(4, ge=0)
    warmup_folds: int = Field(1, ge=0)


class UserModelSection(_Section):
    """Settings of the user's posted model, used when ``model`` is ``user``."""

    # None: the sequence length, as posted; a small value gives a twin that runs in seconds.
    embed_dim: int | None = Field(None, ge=2)


class SearchRange(_Section):
    """A numeric range to search, inclusive at both ends."""

    low: float
    high: float
    log: bool = False
    step: float | None = None


SearchDomain = list[Any] | SearchRange


class Spec(_Section):
    """A whole sweep spec."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 0
    # transformer: the searched classifier; user: the posted IMDB-style model, as it was.
    model: Literal["transformer", "user"] = "transformer"
    user_model: UserModelSection = UserModelSection()
    data: DataSection = DataSection()
    budget: BudgetSection = BudgetSection()
    cv: CrossValidationSection = CrossValidationSection()
    training: TrainingSection = TrainingSection()
    collapse: CollapseSection = CollapseSection()
    sampler: SamplerSection = SamplerSection()
    pruner: PrunerSection = PrunerSection()
    search: dict[str, SearchDomain] = {}
    fixed: dict[str, Any] = {}

    def fixed_parameters(self) -> dict[str, Any]:
        """Every parameter that is not searched: the spec's fixed values over the defaults."""
        values = {name: parameter.default for name, parameter in PARAMETERS.items()}
        values.update(self.fixed)
        if self.model == "user":
            values = {name: values[name] for name in TRAINING_PARAMETERS}
        fixed = {
            name: value
            for name, value in values.items()
            if name not in self.search and value is not None
        }
        return {
            name: value
            for name, value in fixed.items()
            if applies(name, fixed) and self._may_apply(name)
        }

    def _may_apply(self, name: str) -> bool:
        """False for a parameter of a choice that the search never makes."""
        belongs_to = PARAMETERS[name].belongs_to
        if belongs_to is None:
            return True
        parent, value = belongs_to
        choices = self.search.get(parent)
        return not isinstance(choices, list) or value in choices

    def resolved(self) -> dict[str, Any]:
        """The spec as it runs: every section filled in, defaults made explicit."""
        resolved = self.model_dump(mode="json")
        resolved["fixed"] = self.fixed_parameters()
        return resolved


def applies(name: str, values: dict[str, Any]) -> bool:
    """Whether a parameter means anything given the values of the others.

    Args:
        name: A parameter name.
        values: Values of other parameters (a parent that is absent counts as undecided).

    Returns:
        False only when the parameter belongs to a choice that ``values`` did not make.
    """
    belongs_to = PARAMETERS[name].belongs_to
    if belongs_to is None:
        return True
    parent, value = belongs_to
    return values.get(parent, value) == value


def load_spec(path: str | Path) -> Spec:
    """Read and validate a sweep spec.

    Args:
        path: A YAML file.

    Returns:
        The validated spec.

    Raises:
        SpecError: The file is missing or not YAML, a key is unknown, or a value is out of
            range; the message names the file, the key and what would be accepted.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(
            f"{path}: no such sweep spec; pass an existing YAML file, "
            "e.g. --spec sweeps/default.yaml"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        detail = str(error).replace("\n", " ")
        raise SpecError(f"{path}: not a readable YAML file ({detail})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a sweep spec is a YAML mapping of keys, found {raw!r}")
    raw.setdefault("name", path.stem)
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict[str, Any], *, source: str = "spec") -> Spec:
    """Validate a spec given as a mapping (as read from YAML).

    Args:
        raw: The spec's keys and values.
        source: Where it came from, named in error messages.

    Returns:
        The validated spec.

    Raises:
        SpecError: On the first problem found, naming the key.
    """
    try:
        spec = Spec.model_validate(raw)
    except pydantic.ValidationError as error:
        errors = error.errors()
        # A search entry is a list or a range: when a mapping fails as a range, pydantic also
        # reports that it is not a list, which would hide the real mistake.
        useful = [
            e for e in errors if not (e["type"] == "list_type" and isinstance(e["input"], dict))
        ]
        raise SpecError(f"{source}: {_describe((useful or errors)[0])}") from None
    _check_parameters(spec, source)
    return spec


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
    if error["type"] == "extra_forbidden":
        parent = key.rpartition(".")[0]
        accepted = ", ".join(_section_keys(parent))
        return f"unknown key '{key}'" + (f"; accepted keys here: {accepted}" if accepted else "")
    if error["type"] == "missing":
        return f"key '{key}' is required"
    return f"key '{key}': {error['msg']}, found {error['input']!r}"


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried (e.g. 'list[any]') inside the location.
    return isinstance(part, str) and ("[" in part or part == "SearchRange")


def _section_keys(dotted: str) -> list[str]:
    parts = dotted.split(".") if dotted else []
    if len(parts) == 2 and parts[0] == "search":
        return list(SearchRange.model_fields)
    model: type[BaseModel] = Spec
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _check_parameters(spec: Spec, source: str) -> None:
    known = ", ".join(PARAMETERS)
    for section, names in (("search", spec.search), ("fixed", spec.fixed)):
        for name in names:
            if name not in PARAMETERS:
                raise SpecError(
                    f"{source}: unknown parameter '{section}.{name}'; known parameters: {known}"
                )
    if spec.model == "user":
        for section, names in (("search", spec.search), ("fixed", spec.fixed)):
            for name in names:
                if name not in TRAINING_PARAMETERS:
                    raise SpecError(
                        f"{source}: '{section}.{name}' does not apply to model: user, whose "
                        f"layers are fixed as posted; it takes {', '.join(TRAINING_PARAMETERS)} "
                        "(and user_model.embed_dim)"
                    )
    for name in spec.search.keys() & spec.fixed.keys():
        raise SpecError(
            f"{source}: parameter '{name}' is both searched and fixed; keep it in one of "
            "'search' or 'fixed'"
        )
    for name, value in spec.fixed.items():
        _check_value(source, f"fixed.{name}", name, value)
    for name, domain in spec.search.items():
        _check_domain(source, name, domain)

    fixed = spec.fixed_parameters()
    for name, parameter in PARAMETERS.items():
        if parameter.belongs_to is None or name not in spec.search:
            continue
        parent, value = parameter.belongs_to
        if parent in fixed and fixed[parent] != value:
            raise SpecError(
                f"{source}: 'search.{name}' only applies when {parent} is {value!r}, but "
                f"{parent} is fixed to {fixed[parent]!r}; remove it or search {parent}"
            )
        if parent in spec.search and value not in possible_values(spec, parent):
            raise SpecError(
                f"{source}: 'search.{name}' only applies when {parent} is {value!r}, which "
                f"'search.{parent}' never chooses; add {value!r} to it or remove {name}"
            )

    if spec.sampler.name == "grid":
        for name, domain in spec.search.items():
            if not isinstance(domain, list):
                raise SpecError(
                    f"{source}: 'search.{name}' is a range, but sampler grid needs a list of "
                    "choices for every searched parameter; list the values to try"
                )
    if spec.model == "user":
        return
    for width, num_heads in itertools.product(
        possible_values(spec, "width"), possible_values(spec, "num_heads")
    ):
        if width % num_heads:
            raise SpecError(
                f"{source}: width {width} is not divisible by num_heads {num_heads}, which "
                "the attention needs (each head gets width / num_heads); choose widths that "
                "every head count divides"
            )
    # A stride longer than its window would skip values between windows.
    for stride_name, window_name in (
        ("patch_stride", "patch_length"),
        ("conv_stride", "conv_kernel_size"),
    ):
        strides = possible_values(spec, stride_name)
        windows = possible_values(spec, window_name)
        if strides and windows and max(strides) > min(windows):
            raise SpecError(
                f"{source}: {stride_name} can be {max(strides)} but {window_name} can be "
                f"{min(windows)}, and a stride longer than its window skips values; keep "
                f"every {stride_name} at or below every {window_name}"
            )


def _check_value(source: str, key: str, name: str, value: Any) -> Any:
    parameter = PARAMETERS[name]
    if parameter.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not parameter.kind or not parameter.check(value):
        raise SpecError(f"{source}: key '{key}': found {value!r}; accepted: {parameter.accepted}")
    return value


def _check_domain(source: str, name: str, domain: SearchDomain) -> None:
    key = f"search.{name}"
    parameter = PARAMETERS[name]
    if isinstance(domain, list):
        if not domain:
            raise SpecError(f"{source}: key '{key}': an empty list of choices; list at least one")
        for value in domain:
            _check_value(source, key, name, value)
        return
    if parameter.kind not in (int, float):
        raise SpecError(
            f"{source}: key '{key}': {name} takes a list of choices, not a range; "
            f"accepted: {parameter.accepted}"
        )
    for bound in ("low", "high"):
        value = getattr(domain, bound)
        if parameter.kind is int and value != int(value):
            raise SpecError(f"{source}: key '{key}.{bound}': {name} takes integers, found {value}")
        _check_value(source, f"{key}.{bound}", name, parameter.kind(value))
    if domain.low > domain.high:
        raise SpecError(
            f"{source}: key '{key}': low {domain.low} is above high {domain.high}; swap them"
        )
    if domain.log and domain.low <= 0:
        raise SpecError(f"{source}: key '{key}': a log range needs low > 0, found {domain.low}")
    if domain.log and domain.step is not None:
        raise SpecError(f"{source}: key '{key}': choose either log or step, not both")


def possible_values(spec: Spec, name: str) -> list[Any]:
    """Every value a parameter can take in this spec (integer ranges are enumerated).

    Args:
        spec: The validated spec.
        name: A parameter name.

    Returns:
        The values; a float range gives its two ends.
    """
    domain = spec.search.get(name)
    if domain is None:
        fixed = spec.fixed_parameters()
        return [fixed[name]] if name in fixed else []
    if isinstance(domain, list):
        return list(domain)
    if PARAMETERS[name].kind is int and not domain.log:
        return list(range(int(domain.low), int(domain.high) + 1, int(domain.step or 1)))
    if PARAMETERS[name].kind is int:
        return list(range(int(domain.low), int(domain.high) + 1))
    return [domain.low, domain.high]
