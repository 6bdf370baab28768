"""Search quality: flywheel's coarse-to-fine plan vs single-stage TPE vs random search.

``python -m benchmarks.search_quality --help`` lists the options; results go to
docs/benchmarks.md. The entry point is :func:`benchmarks.search_quality.cli.main`. This file
imports nothing, so that the Ray workers and process-pool workers that import one of the
modules do not pay for all of them.
"""
