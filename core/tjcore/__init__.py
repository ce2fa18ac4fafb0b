"""Shared core: settings, TrainingJob spec validation, the ``training_jobs`` table, the
local runner and the ``tjctl`` command line."""
