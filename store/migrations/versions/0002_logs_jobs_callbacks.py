"""Live logs (``call_logs``), container jobs (``jobs``), callback outcomes on calls.

Revision ID: 0002
Revises: 0001
Create Date: 2025-03-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column("calls", sa.Column("callback", sa.JSON(none_as_null=True), nullable=True))

    op.create_table(
        "call_logs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("nbytes", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", "attempt", "seq"),
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("image", sa.String(), nullable=True),
        sa.Column("command", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("env", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_node", sa.String(), nullable=True),
        sa.Column("finished_node", sa.String(), nullable=True),
        sa.Column("container", sa.String(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_number", "jobs", ["number"])
    op.create_index("ix_jobs_created_id", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_status_created_id", "jobs", ["status", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("call_logs")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("callback")
        batch.drop_column("callback_url")
