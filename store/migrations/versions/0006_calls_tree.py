"""Nested calls: each call's parent and the root of its tree.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("parent", sa.String(length=64), nullable=True))
    op.add_column("calls", sa.Column("root", sa.String(length=64), nullable=True))
    op.create_index("ix_calls_root", "calls", ["root"])


def downgrade() -> None:
    op.drop_index("ix_calls_root", table_name="calls")
    op.drop_column("calls", "root")
    op.drop_column("calls", "parent")
