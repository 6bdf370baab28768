"""The ``flywheel`` command line: a thin layer over :class:`flywheel.Client`."""

from flywheel.cli.app import app, main

__all__ = ["app", "main"]
