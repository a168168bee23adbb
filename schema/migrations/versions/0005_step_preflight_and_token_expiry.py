"""preflight_checks.step_id: a check's result belongs to a plan step (MetaDeploy's rule)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("preflight_checks") as batch:
        step_id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        batch.add_column(sa.Column("step_id", step_id_type, nullable=True))
        batch.create_foreign_key(
            "fk_preflight_checks_step_id_steps", "steps", ["step_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("preflight_checks") as batch:
        batch.drop_constraint("fk_preflight_checks_step_id_steps", type_="foreignkey")
        batch.drop_column("step_id")
