"""audit_log; api_tokens.scope and expires_at; job_runs.cancel_requested_at and retry_of

Existing API tokens get the ``admin`` scope: before this revision every token could do
everything, and an upgrade must not lock an operator out of their own page. Their
``expires_at`` stays NULL: it is still computed from ``created_at`` and
TICKWORK_API_TOKEN_EXPIRE_AFTER_DAYS, as before; new tokens store theirs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

import schema.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(sqlite.JSON(), "sqlite")
)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scope", sa.String(length=20), nullable=True))
        batch.add_column(
            sa.Column("expires_at", schema.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE api_tokens SET scope = 'admin'")
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("scope", existing_type=sa.String(length=20), nullable=False)
        batch.create_check_constraint(
            "scope_known", "scope IN ('viewer', 'operator', 'admin')"
        )
        batch.create_index(op.f("ix_api_tokens_expires_at"), ["expires_at"], unique=False)

    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(
            sa.Column(
                "cancel_requested_at", schema.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch.add_column(sa.Column("retry_of", BIGINT, nullable=True))
        batch.create_foreign_key(
            op.f("fk_job_runs_retry_of_job_runs"),
            "job_runs",
            ["retry_of"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_job_runs_retry_of"), ["retry_of"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column(
            "at",
            schema.base.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("token_id", BIGINT, nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_audit_log_token_id_api_tokens"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
    op.create_index("ix_audit_log_target_at", "audit_log", ["target", "at"], unique=False)
    _append_only()


# Append-only, enforced by the database: an UPDATE of what a row says is refused. Only
# token_id may change (ON DELETE SET NULL when its token is revoked or expires), and
# rows past the retention are deleted (prune_audit_log).
_SAID = "id, at, actor, action, target, before, after, detail"
_REFUSAL = "audit_log is append-only: its rows are never updated"


def _append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tickwork_audit_log_append_only() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER audit_log_append_only BEFORE UPDATE OF {_SAID} ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION tickwork_audit_log_append_only()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER audit_log_append_only BEFORE UPDATE OF {_SAID} ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only" + (
        " ON audit_log" if op.get_bind().dialect.name == "postgresql" else ""
    ))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tickwork_audit_log_append_only()")
    op.drop_index("ix_audit_log_target_at", table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_index(op.f("ix_job_runs_retry_of"))
        batch.drop_constraint(op.f("fk_job_runs_retry_of_job_runs"), type_="foreignkey")
        batch.drop_column("retry_of")
        batch.drop_column("cancel_requested_at")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index(op.f("ix_api_tokens_expires_at"))
        batch.drop_constraint(op.f("ck_api_tokens_scope_known"), type_="check")
        batch.drop_column("expires_at")
        batch.drop_column("scope")
