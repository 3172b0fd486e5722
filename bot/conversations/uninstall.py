"""A workspace that uninstalled the app, with DATA_ON_UNINSTALL=purge: each of its conversations is forgotten."""

from __future__ import annotations

import asyncio
import logging

from bot.conversations.channels import ConversationControl
from bot.errors import APIError, ConversationBusy
from bot.store.workspaces import WorkspaceRecords

log = logging.getLogger(__name__)

# A conversation being answered at the uninstall is tried again: its answer fails soon (the token is gone).
BUSY_RETRIES = 30
BUSY_RETRY_SECONDS = 2.0


class WorkspacePurger:
    """Forgets every conversation of a workspace as `/assistant forget` does: what the backend keeps on the
    API first (conversations, threads, files, vector stores), then the rows."""

    def __init__(
        self,
        *,
        control: ConversationControl,
        records: WorkspaceRecords,
        busy_retry_seconds: float = BUSY_RETRY_SECONDS,
    ) -> None:
        self._control = control
        self._records = records
        self._busy_retry_seconds = busy_retry_seconds

    async def purge(self, team_id: str) -> int:
        """Forget the workspace's conversations; returns how many went. Those the API would not let go stay."""
        waiting = await self._records.conversation_ids(team_id)
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
                        "workspace %s: conversation %s kept; the API refused a deletion: %s",
                        team_id,
                        conversation_id,
                        exc,
                    )
            waiting = busy
            if not waiting:
                break
            await asyncio.sleep(self._busy_retry_seconds)
        log.info(
            "workspace %s: purged %d conversations on uninstall; %d still busy were left",
            team_id,
            forgotten,
            len(waiting),
        )
        return forgotten
