"""Durable workspace purges: a workspace that uninstalled with DATA_ON_UNINSTALL=purge, until its rows are gone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workspace_purges',
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claim_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('team_id', name=op.f('pk_workspace_purges'))
    )


def downgrade() -> None:
    op.drop_table('workspace_purges')
