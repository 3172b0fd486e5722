"""Each MCP tool call recorded once: the response item that tells of it, unique.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mcp_tool_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('item_id', sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_mcp_tool_calls_item_id'), ['item_id'])


def downgrade() -> None:
    with op.batch_alter_table('mcp_tool_calls', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_mcp_tool_calls_item_id'), type_='unique')
        batch_op.drop_column('item_id')
