"""The control plane: the single writer of teams, tokens, experiments and the admission queue.

A FastAPI app (:func:`flywheel.server.app.create_app`) over a SQLAlchemy database (SQLite in WAL
mode under the platform home, or PostgreSQL), migrated by the Alembic scripts shipped in
``flywheel/server/migrations``. A queue driver thread reconciles experiments with the experiment
backend and admits them through the pure :func:`flywheel.admission.decide`.
"""
