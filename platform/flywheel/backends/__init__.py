"""Adapters at the edges, each behind a small protocol: where serving state lives, how Serve is
driven. The control plane will swap in its own (database store, RayService on Kubernetes)."""
