"""Feedback on answers, per-channel reply modes and feedback switch, stop requests, pane context.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('stop_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('viewing_context', sa.JSON(), nullable=True))
    with op.batch_alter_table('channel_settings') as batch:
        batch.add_column(sa.Column('reply_mode', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('feedback_enabled', sa.Boolean(), nullable=True))
    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('turn_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=8), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['turn_id'], ['turns.id'], name=op.f('fk_feedback_turn_id_turns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback')),
    sa.UniqueConstraint('turn_id', 'user_id', name=op.f('uq_feedback_turn_id_user_id'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index('ix_feedback_team_channel_updated', ['team_id', 'channel_id', 'updated_at'], unique=False)
    op.create_table('channel_setting_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('setting', sa.String(length=32), nullable=False),
    sa.Column('from_value', sa.String(length=32), nullable=False),
    sa.Column('to_value', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_setting_changes'))
    )
    with op.batch_alter_table('channel_setting_changes', schema=None) as batch_op:
        batch_op.create_index('ix_channel_setting_changes_team_channel', ['team_id', 'channel_id'], unique=False)


def downgrade() -> None:
    op.drop_table('channel_setting_changes')
    op.drop_table('feedback')
    with op.batch_alter_table('channel_settings') as batch:
        batch.drop_column('feedback_enabled')
        batch.drop_column('reply_mode')
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('viewing_context')
        batch.drop_column('stop_requested_at')
