"""Side-by-side benchmarks of flywheel against named peers; results go to docs/benchmarks.md."""
