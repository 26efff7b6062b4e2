"""Initial schema: teams, authors, splits, entries, submissions, evaluations and their scores.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Timestamps are naive UTC (the models' UTCDateTime returns them aware).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('splits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=80), nullable=False),
    sa.Column('n_items', sa.Integer(), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_splits')),
    sa.UniqueConstraint('name', name=op.f('uq_splits_name'))
    )
    op.create_table('teams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('name', name=op.f('uq_teams_name'))
    )
    op.create_table('authors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_authors_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_authors')),
    sa.UniqueConstraint('team_id', 'name', name=op.f('uq_authors_team_id_name'))
    )
    op.create_table('entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('authors', sa.Text(), nullable=False),
    sa.Column('paper_url', sa.String(length=500), nullable=False),
    sa.Column('code_url', sa.String(length=500), nullable=False),
    sa.Column('tasks', sa.String(length=64), nullable=False),
    sa.Column('baseline', sa.Boolean(), nullable=False),
    sa.Column('visibility', sa.String(length=16), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('flag_reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("visibility IN ('public', 'private')", name=op.f('ck_entries_visibility')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_entries_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entries')),
    sa.UniqueConstraint('name', name=op.f('uq_entries_name'))
    )
    op.create_index(op.f('ix_entries_team_id'), 'entries', ['team_id'], unique=False)

    op.create_table('submissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('split_id', sa.Integer(), nullable=True),
    sa.Column('entry_name', sa.String(length=200), nullable=False),
    sa.Column('team_name', sa.String(length=200), nullable=False),
    sa.Column('split_name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('source_name', sa.String(length=500), nullable=False),
    sa.Column('files_hash', sa.String(length=80), nullable=True),
    sa.Column('files_size', sa.BigInteger(), nullable=True),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('allow_missing', sa.Boolean(), nullable=False),
    sa.Column('options', sa.Text(), nullable=False),
    sa.Column('baseline', sa.Boolean(), nullable=False),
    sa.Column('submission_hash', sa.String(length=80), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('scored_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('received', 'validating', 'scoring', 'scored', 'failed', 'withdrawn')", name=op.f('ck_submissions_status')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_submissions_entry_id_entries')),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], name=op.f('fk_submissions_split_id_splits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_submissions'))
    )
    op.create_index(op.f('ix_submissions_entry_id_split_id_status'), 'submissions', ['entry_id', 'split_id', 'status'], unique=False)
    op.create_index(op.f('ix_submissions_files_hash'), 'submissions', ['files_hash'], unique=False)
    op.create_index(op.f('ix_submissions_team_name_split_name_created_at'), 'submissions', ['team_name', 'split_name', 'created_at'], unique=False)

    op.create_table('evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('split_id', sa.Integer(), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('metric_version', sa.String(length=32), nullable=False),
    sa.Column('dataset_fingerprint', sa.String(length=80), nullable=False),
    sa.Column('submission_hash', sa.String(length=80), nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.Column('n_truth', sa.Integer(), nullable=False),
    sa.Column('n_scored', sa.Integer(), nullable=False),
    sa.Column('n_missing', sa.Integer(), nullable=False),
    sa.Column('tasks', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_evaluations_entry_id_entries')),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], name=op.f('fk_evaluations_split_id_splits')),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], name=op.f('fk_evaluations_submission_id_submissions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluations'))
    )
    op.create_index(op.f('ix_evaluations_entry_id_split_id_protocol'), 'evaluations', ['entry_id', 'split_id', 'protocol'], unique=False)
    op.create_index(op.f('ix_evaluations_split_id_protocol_current'), 'evaluations', ['split_id', 'protocol', 'current'], unique=False)
    op.create_index(op.f('ix_evaluations_submission_id'), 'evaluations', ['submission_id'], unique=False)

    op.create_table('breakdown_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('dimension', sa.String(length=16), nullable=False),
    sa.Column('group_name', sa.String(length=64), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.CheckConstraint("dimension IN ('method', 'source')", name=op.f('ck_breakdown_scores_dimension')),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'], name=op.f('fk_breakdown_scores_evaluation_id_evaluations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_breakdown_scores')),
    sa.UniqueConstraint('evaluation_id', 'dimension', 'group_name', 'metric', name=op.f('uq_breakdown_scores_evaluation_id_dimension_group_name_metric'))
    )
    op.create_table('sample_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('encoding', sa.String(length=8), nullable=False),
    sa.Column('shape', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'], name=op.f('fk_sample_scores_evaluation_id_evaluations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_scores')),
    sa.UniqueConstraint('evaluation_id', 'name', name=op.f('uq_sample_scores_evaluation_id_name'))
    )
    op.create_table('scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('split_id', sa.Integer(), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('ci_low', sa.Float(), nullable=True),
    sa.Column('ci_high', sa.Float(), nullable=True),
    sa.Column('metric_version', sa.String(length=32), nullable=False),
    sa.Column('dataset_fingerprint', sa.String(length=80), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_scores_entry_id_entries')),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'], name=op.f('fk_scores_evaluation_id_evaluations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], name=op.f('fk_scores_split_id_splits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scores')),
    sa.UniqueConstraint('evaluation_id', 'metric', name=op.f('uq_scores_evaluation_id_metric'))
    )
    op.create_index(op.f('ix_scores_entry_id_split_id_protocol_metric'), 'scores', ['entry_id', 'split_id', 'protocol', 'metric'], unique=False)



def downgrade() -> None:
    op.drop_index(op.f('ix_scores_entry_id_split_id_protocol_metric'), table_name='scores')

    op.drop_table('scores')
    op.drop_table('sample_scores')
    op.drop_table('breakdown_scores')
    op.drop_index(op.f('ix_evaluations_submission_id'), table_name='evaluations')
    op.drop_index(op.f('ix_evaluations_split_id_protocol_current'), table_name='evaluations')
    op.drop_index(op.f('ix_evaluations_entry_id_split_id_protocol'), table_name='evaluations')

    op.drop_table('evaluations')
    op.drop_index(op.f('ix_submissions_team_name_split_name_created_at'), table_name='submissions')
    op.drop_index(op.f('ix_submissions_files_hash'), table_name='submissions')
    op.drop_index(op.f('ix_submissions_entry_id_split_id_status'), table_name='submissions')

    op.drop_table('submissions')
    op.drop_index(op.f('ix_entries_team_id'), table_name='entries')

    op.drop_table('entries')
    op.drop_table('authors')
    op.drop_table('teams')
    op.drop_table('splits')
    op.drop_table('settings')
