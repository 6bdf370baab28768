"""The control plane's database: engine (SQLite in WAL mode, or PostgreSQL) and migrations."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
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
    config = Config()
    config.set_main_option("script_location", str(files("flywheel.server") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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
