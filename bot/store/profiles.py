"""The bot's own table of assistant profiles, as domain Profiles."""

from __future__ import annotations

from sqlalchemy import or_, select

from bot.conversations.profiles import Profile, ProfileOrigin
from bot.store.models import StoredProfile
from bot.store.repositories import Store


def _profile(row: StoredProfile) -> Profile:
    return Profile(
        id=row.id,
        name=row.name,
        model=row.model,
        instructions=row.instructions,
        tools=tuple(row.tools),
        vector_store_ids=tuple(row.vector_store_ids),
        reasoning_effort=row.reasoning_effort,
    )


class ProfileRecords:
    """Read and write profiles by id; a workspace sees the profiles it made plus those copied from the API."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, profile_id: str) -> Profile | None:
        async with self._store.transaction() as session:
            row = await session.get(StoredProfile, profile_id)
            return None if row is None else _profile(row)

    async def list(self, *, team_id: str | None = None) -> list[Profile]:
        async with self._store.transaction() as session:
            query = select(StoredProfile).order_by(StoredProfile.name, StoredProfile.id)
            if team_id is not None:
                query = query.where(or_(StoredProfile.team_id == team_id, StoredProfile.team_id.is_(None)))
            return [_profile(row) for row in await session.scalars(query)]

    async def save(self, profile: Profile, *, origin: ProfileOrigin | None = None) -> None:
        """Insert or replace the profile; where it was created is kept from its first save."""
        async with self._store.transaction() as session:
            row = await session.get(StoredProfile, profile.id)
            if row is None:
                row = StoredProfile(id=profile.id)
                if origin is not None:
                    row.team_id, row.channel_id, row.created_by = origin.team_id, origin.channel_id, origin.user_id
                session.add(row)
            row.name = profile.name
            row.model = profile.model
            row.instructions = profile.instructions
            row.tools = list(profile.tools)
            row.vector_store_ids = list(profile.vector_store_ids)
            row.reasoning_effort = profile.reasoning_effort
