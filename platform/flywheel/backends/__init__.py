"""Adapters at the edges, each behind a small protocol.

- where experiments run: the :class:`~flywheel.backends.base.ExperimentBackend` protocol, with
  :mod:`flywheel.backends.ray_jobs` as the local Ray Jobs adapter (the only module that imports
  ``ray.job_submission``); the Kubernetes adapter lives in :mod:`flywheel.k8s`;
- where serving state lives (:mod:`flywheel.backends.documents`) and how Serve is driven
  (:mod:`flywheel.backends.serving`, Serve's REST API). The control plane will swap in its own
  (database store, RayService on Kubernetes).
"""
