"""Database tables of the control plane (SQLAlchemy 2, typed mappings).

The schema is created and changed only by the Alembic migrations in ``migrations/``; a test
checks that the migrated schema matches these models.
"""

from __future__ import annotations

from typing import Literal, get_args

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ExperimentState = Literal[
    "QUEUED", "ADMITTED", "RUNNING", "PREEMPTING", "PREEMPTED", "SUCCEEDED", "FAILED", "STOPPED"
]
STATES: tuple[str, ...] = get_args(ExperimentState)

#: States in which an experiment waits for admission (PREEMPTED ones resume when admitted).
WAITING_STATES = frozenset({"QUEUED", "PREEMPTED"})
#: States in which an experiment holds its resources on the cluster.
HOLDING_STATES = frozenset({"ADMITTED", "RUNNING", "PREEMPTING"})
#: States an experiment never leaves.
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class Base(DeclarativeBase):
    """Base of every table."""


class Team(Base):
    """A team of the teams file, synced at every start (the file is the source of truth)."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Token(Base):
    """An API token: only its sha256 is stored. ``team`` is None for admin tokens."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    team: Mapped[str | None] = mapped_column(ForeignKey("teams.name"), nullable=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at_s: Mapped[float] = mapped_column(Float)


class Experiment(Base):
    """One submitted experiment, across every Ray job (attempt) it takes to finish."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    team: Mapped[str] = mapped_column(ForeignKey("teams.name"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer)
    submitted_at_s: Mapped[float] = mapped_column(Float)
    demand_cpu: Mapped[float] = mapped_column(Float)
    demand_gpu: Mapped[int] = mapped_column(Integer)
    demand_memory_gib: Mapped[float] = mapped_column(Float)
    bundle_url: Mapped[str] = mapped_column(Text)
    plan_json: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    ray_job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    admitted_at_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_checkpoint_at_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    gpu_minutes_lost: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")


class Transition(Base):
    """One state change of an experiment, with why and when."""

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at_s: Mapped[float] = mapped_column(Float)
