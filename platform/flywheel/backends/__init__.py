"""Where experiments run: the :class:`ExperimentBackend` protocol and its adapters.

:mod:`flywheel.backends.ray_jobs` is the local Ray Jobs adapter (the only module that imports
``ray.job_submission``); the Kubernetes adapter lives in :mod:`flywheel.k8s`.
"""
