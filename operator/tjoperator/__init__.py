"""The TrainingJob operator (kopf): one Job per TrainingJob, live progress into the CR
status and the ``training_jobs`` table, and the bridge from table rows to TrainingJobs.

Layers import one way: ``handlers`` → ``kube`` (the only module that calls the API) and
the pure builders ``job_builder`` and ``status``.
"""
