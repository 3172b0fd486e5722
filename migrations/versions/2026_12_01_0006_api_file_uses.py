"""Which conversations use each uploaded file, so that forgetting one never deletes another's file.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_file_uses',
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_api_file_uses_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['record_id'], ['api_files.id'], name=op.f('fk_api_file_uses_record_id_api_files'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('record_id', 'conversation_id', name=op.f('pk_api_file_uses'))
    )
    with op.batch_alter_table('api_file_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_file_uses_conversation_id'), ['conversation_id'], unique=False)
    # Earlier reuses were never recorded: each file counts as used by the conversation that uploaded it.
    op.execute(
        "INSERT INTO api_file_uses (record_id, conversation_id) "
        "SELECT id, conversation_id FROM api_files WHERE conversation_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table('api_file_uses')
