"""Plain implementations flywheel is measured against."""
