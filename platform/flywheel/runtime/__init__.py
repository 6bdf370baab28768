"""Code that runs inside a flywheel Ray job: ``python -m flywheel.runtime PLAN``.

Never imported by the CLI, the client or the server.
"""
