"""Messages from before a test began: a posted message moved back in time, for reads with a time window."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .workspace import ts_key

if TYPE_CHECKING:
    from .server import SlackDouble


def backdate(slack: SlackDouble, channel: str, ts: str, *, hours: float, team_id: str | None = None) -> str:
    """Move a top-level message without replies `hours` back, as if posted then; returns its new ts.

    Listings keep the order messages were posted in, so backdate messages posted before the others.
    """
    with slack._lock:
        ws = slack._workspace(team_id)
        message = ws.existing(channel, ts)
        if message.is_reply or len(ws.visible(channel, ts)) > 1:
            raise ValueError("only a top-level message without replies can be moved in time")
        seconds, micros = ts_key(ts)
        message.fields["ts"] = f"{seconds - round(hours * 3600)}.{micros:06d}"
        return str(message.fields["ts"])
