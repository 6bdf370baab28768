"""Serving, purely: the serving document and its changes, what Serve is asked to run, results."""
