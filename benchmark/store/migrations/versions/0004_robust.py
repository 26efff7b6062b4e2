"""Robustness variants: a split may be a degraded variant of a base split; a variant submission
records the entry's clean submission it is linked to.

Revision ID: 0004
Revises: 0005
Create Date: 2026-12-01

Both columns are nullable, so existing rows need no backfill: every split on an older board is a
clean split and every submission a clean one.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("splits") as batch:
        batch.add_column(sa.Column("base_split_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(length=32), nullable=True))
        batch.create_foreign_key(op.f("fk_splits_base_split_id_splits"), "splits", ["base_split_id"], ["id"])
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("clean_submission_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_submissions_clean_submission_id_submissions"), "submissions",
                                 ["clean_submission_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("fk_submissions_clean_submission_id_submissions"), type_="foreignkey")
        batch.drop_column("clean_submission_id")
    with op.batch_alter_table("splits") as batch:
        batch.drop_constraint(op.f("fk_splits_base_split_id_splits"), type_="foreignkey")
        batch.drop_column("variant")
        batch.drop_column("base_split_id")
