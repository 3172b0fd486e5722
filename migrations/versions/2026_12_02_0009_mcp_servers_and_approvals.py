"""Remote MCP servers per workspace, their approvals and tool calls.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mcp_servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('allowed_tools', sa.JSON(), nullable=False),
    sa.Column('approval', sa.String(length=16), nullable=False),
    sa.Column('approval_tools', sa.JSON(), nullable=False),
    sa.Column('secret_header', sa.String(length=128), nullable=True),
    sa.Column('secret_ciphertext', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mcp_servers')),
    sa.UniqueConstraint('team_id', 'label', name=op.f('uq_mcp_servers_team_id_label'))
    )
    op.create_table('mcp_approvals',
    sa.Column('approval_id', sa.String(length=128), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('thread_ts', sa.String(length=32), nullable=True),
    sa.Column('asker_id', sa.String(length=32), nullable=False),
    sa.Column('server_label', sa.String(length=64), nullable=False),
    sa.Column('tool_name', sa.String(length=128), nullable=False),
    sa.Column('arguments', sa.Text(), nullable=False),
    sa.Column('prompt_ts', sa.String(length=32), nullable=True),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('decided_by', sa.String(length=32), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_mcp_approvals_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('approval_id', name=op.f('pk_mcp_approvals'))
    )
    with op.batch_alter_table('mcp_approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mcp_approvals_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index('ix_mcp_approvals_decision_expires', ['decision', 'expires_at'], unique=False)
    op.create_table('mcp_tool_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('server_label', sa.String(length=64), nullable=False),
    sa.Column('tool_name', sa.String(length=128), nullable=False),
    sa.Column('asked_by', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('called_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_mcp_tool_calls_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mcp_tool_calls'))
    )
    with op.batch_alter_table('mcp_tool_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mcp_tool_calls_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index('ix_mcp_tool_calls_team_called', ['team_id', 'called_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mcp_tool_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_mcp_tool_calls_team_called')
        batch_op.drop_index(batch_op.f('ix_mcp_tool_calls_conversation_id'))
    op.drop_table('mcp_tool_calls')
    with op.batch_alter_table('mcp_approvals', schema=None) as batch_op:
        batch_op.drop_index('ix_mcp_approvals_decision_expires')
        batch_op.drop_index(batch_op.f('ix_mcp_approvals_conversation_id'))
    op.drop_table('mcp_approvals')
    op.drop_table('mcp_servers')
