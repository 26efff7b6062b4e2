"""Breakdowns by facial region: the breakdown dimension may also be 'region'.

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-01
"""
from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("breakdown_scores") as batch:
        batch.drop_constraint(op.f("ck_breakdown_scores_dimension"), type_="check")
        batch.create_check_constraint(op.f("ck_breakdown_scores_dimension"), "dimension IN ('method', 'source', 'region')")


def downgrade() -> None:
    op.execute("DELETE FROM breakdown_scores WHERE dimension = 'region'")
    with op.batch_alter_table("breakdown_scores") as batch:
        batch.drop_constraint(op.f("ck_breakdown_scores_dimension"), type_="check")
        batch.create_check_constraint(op.f("ck_breakdown_scores_dimension"), "dimension IN ('method', 'source')")
