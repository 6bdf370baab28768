"""Scheduling benchmark: a simulated shared GPU cluster under flywheel's admission and its peers."""
