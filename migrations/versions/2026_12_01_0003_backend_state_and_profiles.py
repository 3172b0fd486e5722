"""Backend-neutral conversations: backend + opaque state and progress, profiles, retired states.

Existing Assistants rows keep working: a conversation's thread (and vector store) become its state on
the `assistants` backend, a turn's message and run ids its progress, a retired thread a retired state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations


import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

ASSISTANTS = "assistants"


def upgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('backend', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('backend_state', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('history_since', sa.String(length=32), nullable=True))
    conversations = sa.table(
        'conversations', sa.column('id', sa.Integer), sa.column('api_thread_id', sa.String),
        sa.column('vector_store_id', sa.String), sa.column('backend', sa.String),
        sa.column('backend_state', sa.JSON),
    )
    for row in connection.execute(
        sa.select(conversations.c.id, conversations.c.api_thread_id, conversations.c.vector_store_id)
        .where(conversations.c.api_thread_id.is_not(None))
    ):
        state = {"thread_id": row.api_thread_id}
        if row.vector_store_id:
            state["vector_store_id"] = row.vector_store_id
        connection.execute(
            conversations.update().where(conversations.c.id == row.id).values(backend=ASSISTANTS, backend_state=state)
        )
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('api_thread_id')
        batch.drop_column('assistant_id')
        batch.drop_column('vector_store_id')

    with op.batch_alter_table('turns') as batch:
        batch.add_column(sa.Column('backend_progress', sa.JSON(), nullable=True))
    turns = sa.table(
        'turns', sa.column('id', sa.Integer), sa.column('event_id', sa.String),
        sa.column('api_message_id', sa.String), sa.column('run_id', sa.String),
        sa.column('backend_progress', sa.JSON),
    )
    for row in connection.execute(
        sa.select(turns.c.id, turns.c.event_id, turns.c.api_message_id, turns.c.run_id).where(
            sa.or_(turns.c.api_message_id.is_not(None), turns.c.run_id.is_not(None))
        )
    ):
        progress: dict[str, object] = {"message_ids": {row.event_id: row.api_message_id} if row.api_message_id else {}}
        if row.run_id:
            progress["run_id"] = row.run_id
        connection.execute(turns.update().where(turns.c.id == row.id).values(backend_progress=progress))
    with op.batch_alter_table('turns') as batch:
        batch.drop_column('api_message_id')
        batch.drop_column('run_id')

    op.create_table('retired_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('backend', sa.String(length=16), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_retired_states_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retired_states'))
    )
    with op.batch_alter_table('retired_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retired_states_conversation_id'), ['conversation_id'], unique=False)
    retired_threads = sa.table(
        'retired_threads', sa.column('conversation_id', sa.Integer), sa.column('team_id', sa.String),
        sa.column('api_thread_id', sa.String), sa.column('vector_store_id', sa.String),
        sa.column('retired_at', sa.DateTime(timezone=True)),
    )
    retired_states = sa.table(
        'retired_states', sa.column('conversation_id', sa.Integer), sa.column('team_id', sa.String),
        sa.column('backend', sa.String), sa.column('state', sa.JSON), sa.column('retired_at', sa.DateTime(timezone=True)),
    )
    for row in connection.execute(sa.select(retired_threads)):
        state = {"thread_id": row.api_thread_id}
        if row.vector_store_id:
            state["vector_store_id"] = row.vector_store_id
        connection.execute(retired_states.insert().values(
            conversation_id=row.conversation_id, team_id=row.team_id, backend=ASSISTANTS, state=state,
            retired_at=row.retired_at,
        ))
    with op.batch_alter_table('retired_threads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retired_threads_conversation_id'))
    op.drop_table('retired_threads')

    with op.batch_alter_table('channel_settings') as batch:
        batch.alter_column('assistant_id', new_column_name='profile_id', existing_type=sa.String(length=128))
    with op.batch_alter_table('assistant_changes') as batch:
        batch.alter_column('from_assistant_id', new_column_name='from_profile_id', existing_type=sa.String(length=128))
        batch.alter_column('to_assistant_id', new_column_name='to_profile_id', existing_type=sa.String(length=128))

    op.create_table('profiles',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('tools', sa.JSON(), nullable=False),
    sa.Column('vector_store_ids', sa.JSON(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=True),
    sa.Column('channel_id', sa.String(length=32), nullable=True),
    sa.Column('created_by', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_profiles'))
    )
    with op.batch_alter_table('profiles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_profiles_team_id'), ['team_id'], unique=False)


def downgrade() -> None:
    raise NotImplementedError("0003 is not reversible: backend states are not all Assistants threads")
