"""A workspace that uninstalled the app, with DATA_ON_UNINSTALL=purge: everything it left is deleted, durably.

The uninstall records a pending purge (`request`) before Slack gets its 200; the purge itself runs after,
in the background (`work`), and again from `resume_forever` in every process until it is finished: a
crash, a restart or an API that refused a deletion leave it pending, never lost. One process at a time
works it (a claim that its heartbeat keeps, as turns' leases are kept, so a dead process's is free in
seconds); an attempt that left something is tried again a minute later.

A workspace that installs the app again before its purge finished: the purge goes on with what the
workspace left before it uninstalled (rows last written before the uninstall, and conversations begun
before it, with what they gained since), and what it writes after installing again stays. The person
asked for their data to go; installing again does not take that back. An uninstall after that moves the
cut-off to that later uninstall. SQLite stamps rows to the second: a row written in the uninstall's own
second counts as before it.
"""

from __future__ import annotations

import asyncio
import logging

from bot.background import repeat
from bot.conversations.channels import ConversationControl
from bot.conversations.profiles import ProfileCatalog
from bot.errors import APIError, BotError, ConversationBusy
from bot.store.workspaces import PendingPurge, WorkspaceRecords

log = logging.getLogger(__name__)

# A conversation being answered at the uninstall is tried again: its answer fails soon (the token is gone);
# the messages of one no worker is answering are ended unanswered, as none could be answered any more.
BUSY_RETRIES = 30
BUSY_RETRY_SECONDS = 2.0
# How long an attempt that left something waits before the next (by any process).
RETRY_SECONDS = 60.0
# Far longer than a purge takes: a live claimer keeps its claim by its heartbeat, a dead one loses it in seconds.
CLAIM_SECONDS = 3600.0


class WorkspacePurger:
    """Forgets every conversation of a workspace as `/assistant forget` does (what the backend keeps on the
    API first: conversations, threads, files, vector stores; then the rows), then the workspace's other rows."""

    def __init__(
        self,
        *,
        control: ConversationControl,
        records: WorkspaceRecords,
        profiles: ProfileCatalog,
        busy_retry_seconds: float = BUSY_RETRY_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._control = control
        self._records = records
        self._profiles = profiles
        self._busy_retry_seconds = busy_retry_seconds
        self._retry_seconds = retry_seconds

    async def request(self, team_id: str) -> None:
        """Record the purge of what the workspace left until now (durable before Slack gets its 200)."""
        await self._records.request_purge(team_id)
        log.info("workspace %s: purge of its data requested", team_id)

    async def work(self, team_id: str) -> bool:
        """Work the workspace's purge if it is unfinished and nobody else works it; True when it is finished.

        What could not go (busy conversations, deletions the API refused, a database failure) leaves it
        unfinished, for a `resume_pending` after `retry_seconds`.
        """
        purge = await self._records.claim_purge(team_id, lease_seconds=CLAIM_SECONDS)
        if purge is None:
            return False
        purged = False
        try:
            purged = await self._purge(purge)
        except BotError as exc:  # the database or the API failed: tried again later
            log.error("workspace %s: purge attempt %d failed: %s", team_id, purge.attempts, exc)
        finally:
            finished = await self._records.end_purge(purge, finished=purged, retry_seconds=self._retry_seconds)
        if finished:
            log.info("workspace %s: purge finished (attempt %d)", team_id, purge.attempts)
        return finished

    async def resume_pending(self) -> int:
        """Work every unfinished purge nobody works; returns how many finished."""
        finished = 0
        for team_id in await self._records.unfinished_purges():
            if await self.work(team_id):
                finished += 1
        return finished

    async def resume_forever(self, interval_seconds: float) -> None:
        """At start and then every interval: a purge a dead process left, or one whose retry time came, is taken
        up (one query when there is none)."""
        await repeat(self.resume_pending, every=interval_seconds, failure="resuming workspace purges failed")

    async def _purge(self, purge: PendingPurge) -> bool:
        """Forget the conversations begun before the uninstall, then delete the other rows; True if none is left."""
        team_id = purge.team_id
        waiting = await self._records.conversation_ids(team_id, before=purge.requested_at)
        forgotten = 0
        for _ in range(BUSY_RETRIES):
            busy = []
            for conversation_id in waiting:
                try:
                    await self._control.forget(conversation_id)
                    forgotten += 1
                except ConversationBusy:
                    busy.append(conversation_id)
                except APIError as exc:
                    log.warning(
                        "workspace %s: conversation %s kept for now; the API refused a deletion: %s",
                        team_id,
                        conversation_id,
                        exc,
                    )
            waiting = busy
            if not waiting:
                break
            ended = await self._records.end_unanswerable_turns(waiting)
            if ended:
                log.info("workspace %s: %d messages left unanswered, as the app is uninstalled", team_id, ended)
            await asyncio.sleep(self._busy_retry_seconds)
        try:
            # What the server keeps of the workspace's own assistants goes before the rows that name them.
            await self._profiles.purge(await self._records.profile_ids(team_id, before=purge.requested_at))
        except APIError as exc:
            log.warning("workspace %s: its assistants kept for now; the API refused a deletion: %s", team_id, exc)
            return False
        deleted = await self._records.delete_settings_and_records(team_id, before=purge.requested_at)
        left = len(await self._records.conversation_ids(team_id, before=purge.requested_at))
        log.info(
            "workspace %s: purged %d conversations and %s; %d conversations left for a later attempt",
            team_id,
            forgotten,
            ", ".join(f"{count} {table}" for table, count in deleted.items() if count) or "no other rows",
            left,
        )
        return left == 0
