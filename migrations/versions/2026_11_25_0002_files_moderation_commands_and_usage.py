"""Files, moderation events, assistant changes, retired threads and token usage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('assistant_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_assistant_id', sa.String(length=128), nullable=True),
    sa.Column('to_assistant_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assistant_changes'))
    )
    with op.batch_alter_table('assistant_changes', schema=None) as batch_op:
        batch_op.create_index('ix_assistant_changes_team_channel', ['team_id', 'channel_id'], unique=False)

    op.create_table('moderation_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('top_scores', sa.JSON(), nullable=False),
    sa.Column('flagged_text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_moderation_events'))
    )
    with op.batch_alter_table('moderation_events', schema=None) as batch_op:
        batch_op.create_index('ix_moderation_events_team_created', ['team_id', 'created_at'], unique=False)

    op.create_table('api_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('slack_file_id', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=True),
    sa.Column('api_file_id', sa.String(length=128), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_api_files_conversation_id_conversations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_files')),
    sa.UniqueConstraint('team_id', 'channel_id', 'slack_file_id', name=op.f('uq_api_files_team_id_channel_id_slack_file_id'))
    )
    with op.batch_alter_table('api_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_files_conversation_id'), ['conversation_id'], unique=False)

    op.create_table('retired_threads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('api_thread_id', sa.String(length=128), nullable=False),
    sa.Column('vector_store_id', sa.String(length=128), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_retired_threads_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retired_threads'))
    )
    with op.batch_alter_table('retired_threads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retired_threads_conversation_id'), ['conversation_id'], unique=False)

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vector_store_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_conversations_last_message_at'), ['last_message_at'], unique=False)

    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prompt_tokens', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('completion_tokens', sa.Integer(), nullable=True))
        batch_op.create_index('ix_turns_team_user_created', ['team_id', 'user_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.drop_index('ix_turns_team_user_created')
        batch_op.drop_column('completion_tokens')
        batch_op.drop_column('prompt_tokens')

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversations_last_message_at'))
        batch_op.drop_column('last_message_at')
        batch_op.drop_column('vector_store_id')

    with op.batch_alter_table('retired_threads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retired_threads_conversation_id'))

    op.drop_table('retired_threads')
    with op.batch_alter_table('api_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_files_conversation_id'))

    op.drop_table('api_files')
    with op.batch_alter_table('moderation_events', schema=None) as batch_op:
        batch_op.drop_index('ix_moderation_events_team_created')

    op.drop_table('moderation_events')
    with op.batch_alter_table('assistant_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_assistant_changes_team_channel')

    op.drop_table('assistant_changes')
