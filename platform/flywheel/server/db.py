"""The control plane's database: engine (SQLite in WAL mode, or PostgreSQL) and migrations."""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from flywheel.errors import PlatformError

#: How long a SQLite writer waits for another one before failing.
_SQLITE_BUSY_TIMEOUT_MS = 10_000


def open_database(url: str) -> sessionmaker[Session]:
    """Create the engine for ``url``, migrate it to the newest schema, return a session maker."""
    engine = _engine(url)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Run the shipped Alembic migrations up to the newest revision."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_ready(sessions: sessionmaker[Session]) -> bool:
    """Whether the database answers and its schema is at the newest shipped revision."""
    heads = _shipped_heads()
    try:
        with sessions() as session:
            migrations = MigrationContext.configure(session.connection())
            current = set(migrations.get_current_heads())
    except SQLAlchemyError:
        return False
    return current == heads


@functools.cache
def _shipped_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(_alembic_config()).get_heads())


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("flywheel.server") / "migrations"))
    return config


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if parsed.database:
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PlatformError(f"cannot create the folder of {parsed.database}: {e}") from e
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never block the writer; foreign keys on; wait for a busy writer."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
