"""Kubernetes: KubeRay RayJobs and Kueue objects rendered from specs, and the KubeRay adapter.

The only package that imports ``kubernetes``. Rendering (:mod:`~flywheel.k8s.kueue`,
:mod:`~flywheel.k8s.rayjob`) and the rule checks (:mod:`~flywheel.k8s.checks`) are pure.
"""
