"""Sweeps: where data and models meet Optuna and MLflow.

The spec (`spec`) says what to search; the search space (`space`) turns it into a trial's
parameters; the objective (`objective`) cross-validates them and logs the run (`tracking`)
with its collapse metrics (`collapse`); the runner (`runner`) spends the study's budget
(`study`); the command line (`cli`) ties it together.
"""
