"""Alembic environment: runs migrations on the connection :func:`flywheel.server.db.migrate`
hands over (no alembic.ini, no URL here)."""

from __future__ import annotations

from alembic import context

from flywheel.server.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
