"""Serving on Ray Serve: the OIP v2 gateway, one deployment per model version, rollouts."""
