"""Teams, tokens (hashes only), experiments and their state transitions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("team", sa.String(64), sa.ForeignKey("teams.name"), nullable=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created_at_s", sa.Float, nullable=False),
    )
    op.create_index("ix_tokens_token_sha256", "tokens", ["token_sha256"], unique=True)
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("team", sa.String(64), sa.ForeignKey("teams.name"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("submitted_at_s", sa.Float, nullable=False),
        sa.Column("demand_cpu", sa.Float, nullable=False),
        sa.Column("demand_gpu", sa.Integer, nullable=False),
        sa.Column("demand_memory_gib", sa.Float, nullable=False),
        sa.Column("bundle_url", sa.Text, nullable=False),
        sa.Column("plan_json", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("ray_job_id", sa.String(100), nullable=True),
        sa.Column("admitted_at_s", sa.Float, nullable=True),
        sa.Column("last_checkpoint_at_s", sa.Float, nullable=True),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Column("gpu_minutes_lost", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_experiments_team", "experiments", ["team"])
    op.create_index("ix_experiments_state", "experiments", ["state"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(80), sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at_s", sa.Float, nullable=False),
    )
    op.create_index("ix_transitions_experiment_id", "transitions", ["experiment_id"])


def downgrade() -> None:
    op.drop_table("transitions")
    op.drop_table("experiments")
    op.drop_table("tokens")
    op.drop_table("teams")
