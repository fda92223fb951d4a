"""The search space: turn a spec's search and fixed sections into one trial's parameters."""

from __future__ import annotations

from typing import Any

import optuna

from sweeps.spec import PARAMETERS, SearchRange, Spec, applies


def suggest_parameters(trial: optuna.Trial, spec: Spec) -> dict[str, Any]:
    """Sample the searched parameters and merge them with the fixed ones.

    A parameter that belongs to one choice of another (``patch_length`` to the ``patch``
    embedding) is sampled only when that choice was made, so the sampler never learns from
    a value that had no effect, and it is left out of the result otherwise.

    Args:
        trial: The Optuna trial that records the sampled values.
        spec: The validated sweep spec.

    Returns:
        Every parameter the trial uses, by name.
    """
    values = spec.fixed_parameters()
    # PARAMETERS lists parents before the parameters that belong to them.
    for name in PARAMETERS:
        domain = spec.search.get(name)
        if domain is None:
            continue
        if not applies(name, values):
            continue
        values[name] = _suggest(trial, name, domain)
    return {name: values[name] for name in PARAMETERS if name in values and applies(name, values)}


def _suggest(trial: optuna.Trial, name: str, domain: list[Any] | SearchRange) -> Any:
    if isinstance(domain, list):
        return trial.suggest_categorical(name, domain)
    if PARAMETERS[name].kind is int:
        step = int(domain.step or 1)
        return trial.suggest_int(
            name, int(domain.low), int(domain.high), step=step, log=domain.log
        )
    return trial.suggest_float(name, domain.low, domain.high, step=domain.step, log=domain.log)
