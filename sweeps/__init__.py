"""Sweeps: where data and models meet Optuna and MLflow.

The spec (`spec`) says what to search; the search space (`space`) turns it into a trial's
parameters; the objective (`objective`) cross-validates them, watching every epoch for
collapse (`monitor`), and logs the run (`tracking`) with its collapse metrics (`collapse`)
and plots (`artifacts`); the runner (`runner`) spends the study's budget (`study`), in one
process or in parallel workers (`workers`); the baselines (`baselines`) and the report
(`report`) put the trials in context; the command line (`cli`) ties it together.
"""
