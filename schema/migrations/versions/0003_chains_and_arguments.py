"""Workflows (issue 19): chains, run arguments, schedule entries, idempotency keys,
pause on failure

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import schema.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("entry", sa.String(100), server_default="", nullable=False))
        batch.add_column(sa.Column("kwargs", schema.base.JSONType, nullable=True))
        batch.add_column(sa.Column("triggered_by", schema.base.BigIntPK, nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch.create_foreign_key(
            op.f("fk_job_runs_triggered_by_job_runs"),
            "job_runs",
            ["triggered_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_job_runs_triggered_by"), ["triggered_by"], unique=False)
        batch.drop_constraint(op.f("uq_job_runs_job_name_scheduled_for"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_job_runs_job_name_entry_scheduled_for"),
            ["job_name", "entry", "scheduled_for"],
        )
        batch.create_unique_constraint(
            op.f("uq_job_runs_job_name_idempotency_key"), ["job_name", "idempotency_key"]
        )
    with op.batch_alter_table("scheduled_job_configs") as batch:
        batch.add_column(
            sa.Column(
                "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduled_job_configs") as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("consecutive_failures")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_constraint(op.f("uq_job_runs_job_name_idempotency_key"), type_="unique")
        batch.drop_constraint(op.f("uq_job_runs_job_name_entry_scheduled_for"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_job_runs_job_name_scheduled_for"), ["job_name", "scheduled_for"]
        )
        batch.drop_index(op.f("ix_job_runs_triggered_by"))
        batch.drop_constraint(op.f("fk_job_runs_triggered_by_job_runs"), type_="foreignkey")
        batch.drop_column("idempotency_key")
        batch.drop_column("triggered_by")
        batch.drop_column("kwargs")
        batch.drop_column("entry")
